package customer_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/customer"
	"github.com/choreo-go/choreo/services/kit"
)

func TestNewCustomer(t *testing.T) {
	addr := schemas.Address{Line1: "1 Main St", City: "Oslo", Postcode: "0150", Country: " no "}
	c, err := customer.NewCustomer("cus-1", customer.RegisterRequest{Name: " Ada ", Email: "ada@example.com", Address: addr}, time.Now())
	if err != nil || c.Name != "Ada" || c.Address.Country != "NO" {
		t.Fatalf("NewCustomer = %+v, %v", c, err)
	}
	var bad kit.BadRequest
	if _, err := customer.NewCustomer("cus-2", customer.RegisterRequest{Name: "x", Email: "x", Address: addr}, time.Now()); !errors.As(err, &bad) {
		t.Errorf("bad e-mail: %v", err)
	}
}

func TestNewCustomerRefusesControlCharacters(t *testing.T) {
	good := func() customer.RegisterRequest {
		return customer.RegisterRequest{Name: "Ada", Email: "ada@example.com",
			Address: schemas.Address{Line1: "1 Main St", City: "Oslo", Postcode: "0150", Country: "NO"}}
	}
	fields := map[string]func(r *customer.RegisterRequest, v string){
		"name":             func(r *customer.RegisterRequest, v string) { r.Name = v },
		"email":            func(r *customer.RegisterRequest, v string) { r.Email = v },
		"address.line1":    func(r *customer.RegisterRequest, v string) { r.Address.Line1 = v },
		"address.city":     func(r *customer.RegisterRequest, v string) { r.Address.City = v },
		"address.postcode": func(r *customer.RegisterRequest, v string) { r.Address.Postcode = v },
		"address.country":  func(r *customer.RegisterRequest, v string) { r.Address.Country = v },
	}
	payloads := map[string]string{
		"CRLF Bcc": "Eve\r\nBcc: victim@example.com", "LF": "a\nb", "CR": "a\rb", "NUL": "a\x00b",
		"ESC": "a\x1b[31mb", "TAB": "a\tb", "DEL": "a\x7fb", "C1 NEL": "a\u0085b", "C1 CSI": "a\u009bb",
		"line separator": "a\u2028b", "invalid UTF-8": "a\xffb", "trailing CRLF": "Eve\r\n",
	}
	for field, set := range fields {
		for what, v := range payloads {
			req := good()
			set(&req, v)
			_, err := customer.NewCustomer("cus-1", req, time.Now())
			var bad kit.BadRequest
			if !errors.As(err, &bad) || !strings.Contains(bad.Msg, field+":") {
				t.Errorf("%s with %s: %v, want a refusal naming %s", field, what, err, field)
			}
		}
	}
	// Letters of any script, accents and punctuation stay welcome.
	req := good()
	req.Name, req.Address.City = "Zoë O'Brien-Łukasz 山田", "Zürich"
	if _, err := customer.NewCustomer("cus-1", req, time.Now()); err != nil {
		t.Errorf("a good name refused: %v", err)
	}
}
