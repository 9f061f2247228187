// Package customer registers customers and announces them with
// CustomerRegistered events; other services keep their own copies.
package customer

import (
	"context"
	"strings"
	"time"

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

// NewCustomer checks a registration and makes the event: domain logic.
func NewCustomer(id string, req RegisterRequest, now time.Time) (schemas.CustomerRegistered, error) {
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
