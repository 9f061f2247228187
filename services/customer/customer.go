// Package customer registers customers and announces them with
// CustomerRegistered events; other services keep their own copies.
package customer

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
)

// RegisterSubject is where the service takes registrations.
const RegisterSubject = "shop.customer.register"

// RegisterRequest is a registration.
type RegisterRequest struct {
	Name    string          `json:"name"`
	Email   string          `json:"email"`
	Address schemas.Address `json:"address"`
}

// RegisterResult names the new customer.
type RegisterResult struct {
	ID string `json:"id"`
}

// Service is the customer service.
type Service struct {
	d     kit.Deps
	store *kit.Store
}

// New returns the service; Run starts it.
func New(d kit.Deps) *Service { return &Service{d: d} }

// Run takes registrations until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var err error
	if s.store, err = kit.OpenStore(ctx, s.d.JS, "customer"); err != nil {
		return err
	}
	return kit.Serve(ctx, s.d.NC, RegisterSubject, s.Register)
}

// CheckText refuses a registration whose name, e-mail or address holds
// invalid UTF-8 or a control character: C0 (U+0000-U+001F: NUL, TAB, CR,
// LF, ESC...), DEL, C1 (U+0080-U+009F) or a Unicode line or paragraph
// separator. They are single-line fields that end up in e-mail headers,
// files and terminals, where such characters start a new header, line or
// escape sequence. The error is a kit.BadRequest naming the field.
func CheckText(req RegisterRequest) error {
	for _, f := range []struct{ name, value string }{
		{"name", req.Name}, {"email", req.Email}, {"address.line1", req.Address.Line1},
		{"address.city", req.Address.City}, {"address.postcode", req.Address.Postcode}, {"address.country", req.Address.Country},
	} {
		if !utf8.ValidString(f.value) {
			return kit.BadRequest{Msg: "invalid customer: " + f.name + ": not valid UTF-8"}
		}
		for _, r := range f.value {
			if r < 0x20 || r >= 0x7f && r <= 0x9f || r == '\u2028' || r == '\u2029' {
				return kit.BadRequest{Msg: fmt.Sprintf("invalid customer: %s: control character %U is not allowed", f.name, r)}
			}
		}
	}
	return nil
}

// NewCustomer checks a registration and makes the event: domain logic.
func NewCustomer(id string, req RegisterRequest, now time.Time) (schemas.CustomerRegistered, error) {
	if err := CheckText(req); err != nil {
		return schemas.CustomerRegistered{}, err
	}
	req.Address.Country = strings.ToUpper(strings.TrimSpace(req.Address.Country))
	c := schemas.CustomerRegistered{CustomerID: id, Name: strings.TrimSpace(req.Name), Email: strings.TrimSpace(req.Email),
		Address: req.Address, RegisteredAt: now}
	if err := schemas.ValidateValue("CustomerRegistered", c); err != nil {
		return c, kit.BadRequest{Msg: "invalid customer: " + err.Error()}
	}
	return c, nil
}

// Register registers a customer and publishes CustomerRegistered.
func (s *Service) Register(ctx context.Context, req RegisterRequest) (RegisterResult, error) {
	c, err := NewCustomer(kit.NewID("cus"), req, time.Now().UTC())
	if err != nil {
		return RegisterResult{}, err
	}
	if err := s.store.Put(ctx, c.CustomerID, c); err != nil {
		return RegisterResult{}, err
	}
	if err := events.Publish(ctx, s.d.Bus, schemas.TopicCustomerRegistered, c.CustomerID, c); err != nil {
		return RegisterResult{}, err
	}
	return RegisterResult{ID: c.CustomerID}, nil
}
