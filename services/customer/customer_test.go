package customer_test

import (
	"errors"
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
