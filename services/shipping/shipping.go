// Package shipping schedules deliveries: the schedule step of the order
// saga (book, in version 3), compensated by cancelling the delivery. It
// addresses deliveries from its own replica of customers' addresses, built
// from CustomerRegistered events, so it never asks the customer service.
// The address stays here: version 3's step answers the delivery's id
// (DeliveryBooked), not where it goes, so no other participant of the
// saga reads it. In version 4, after the pivot, its deliver step asks the
// carrier for a pickup (PickupRequested) and completes when the carrier
// announces the parcel delivered (ParcelDelivered), asking again while the
// answer is overdue.
package shipping

import (
	"context"
	"fmt"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
)

// Unserved are the countries the shop does not deliver to.
var Unserved = map[string]bool{"AQ": true}

// Delivery is one of the service's deliveries.
type Delivery struct {
	ID           string          `json:"id"`
	OrderID      string          `json:"order_id"`
	Address      schemas.Address `json:"address"`
	Status       string          `json:"status"` // scheduled or cancelled
	Scheduled    int             `json:"scheduled"`
	Cancelled    int             `json:"cancelled"`
	ScheduledFor time.Time       `json:"scheduled_for"`
}

// Service is the shipping service.
type Service struct {
	d     kit.Deps
	store *kit.Store
}

// New returns the service; Run starts it.
func New(d kit.Deps) *Service { return &Service{d: d} }

// Run keeps the address replica and schedules deliveries until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var err error
	if s.store, err = kit.OpenStore(ctx, s.d.JS, "shipping"); err != nil {
		return err
	}
	r, err := s.d.Runner()
	if err != nil {
		return err
	}
	if err := saga.Handle(r, schemas.Schedule, s.schedule, s.cancel); err != nil {
		return err
	}
	if err := saga.Handle(r, schemas.ScheduleDelivery, s.scheduleDelivery, s.cancelBooked); err != nil {
		return err
	}
	if err := saga.Handle(r, schemas.Deliver, s.deliver, nil); err != nil {
		return err
	}
	router, err := s.d.Bus.NewRouter()
	if err != nil {
		return err
	}
	if err := kit.On(router, s.d.Bus, "shipping", schemas.TopicCustomerRegistered, s.remember); err != nil {
		return err
	}
	return kit.Together(ctx, r.Run, func(ctx context.Context) error { return kit.RunRouter(ctx, router) })
}

func (s *Service) remember(ctx context.Context, c schemas.CustomerRegistered) error {
	return s.store.Put(ctx, "customer."+c.CustomerID, c.Address)
}

// schedule is the schedule step of versions 1 and 2, whose result carries
// the address (their contract).
func (s *Service) schedule(ctx context.Context, p schemas.PaymentSucceeded) (schemas.DeliveryScheduled, error) {
	d, err := s.book(ctx)
	if err != nil {
		return schemas.DeliveryScheduled{}, err
	}
	return schemas.DeliveryScheduled{DeliveryID: d.ID, OrderID: d.OrderID, Address: d.Address, ScheduledFor: d.ScheduledFor}, nil
}

// scheduleDelivery is the book step of version 3: ids and a date only.
func (s *Service) scheduleDelivery(ctx context.Context, p schemas.PaymentSucceeded) (schemas.DeliveryBooked, error) {
	d, err := s.book(ctx)
	if err != nil {
		return schemas.DeliveryBooked{}, err
	}
	return schemas.DeliveryBooked{DeliveryID: d.ID, OrderID: d.OrderID, ScheduledFor: d.ScheduledFor, Country: d.Address.Country}, nil
}

// deliver is the deliver step of version 4: it asks the carrier to pick
// the parcel up, and the step completes on the carrier's ParcelDelivered
// (schemas.Deliver: CompletesOn). Each attempt asks again: the carrier
// answers a delivery once, however often it is asked.
func (s *Service) deliver(ctx context.Context, c schemas.OrderConfirmed) (schemas.ParcelDelivered, error) {
	info, _ := saga.InfoFrom(ctx)
	attempt := max(info.Attempt, 1)
	e := schemas.PickupRequested{DeliveryID: "del-" + c.OrderID, OrderID: c.OrderID, Attempt: attempt, RequestedAt: time.Now().UTC()}
	if err := events.Publish(ctx, s.d.Bus, schemas.TopicPickupRequested, fmt.Sprintf("pickup-%s-%d", c.OrderID, attempt), e); err != nil {
		return schemas.ParcelDelivered{}, err // retried
	}
	return saga.Later[schemas.ParcelDelivered]()
}

// book schedules the delivery of the saga's order to its customer's
// address, which the service looks up in its own replica by the
// customer's id.
func (s *Service) book(ctx context.Context) (Delivery, error) {
	o, err := saga.InputOf[schemas.OrderPlaced](ctx)
	if err != nil {
		return Delivery{}, err
	}
	var addr schemas.Address
	if err := s.store.Get(ctx, "customer."+o.CustomerID, &addr); err != nil {
		// The replica may not have the customer yet: retried.
		return Delivery{}, fmt.Errorf("address of customer %s: %w", o.CustomerID, err)
	}
	if Unserved[addr.Country] {
		return Delivery{}, saga.Abortf("we do not deliver to %s", addr.Country)
	}
	id := "del-" + o.OrderID
	d, err := kit.Update(ctx, s.store, "delivery."+id, func(d *Delivery) (bool, error) {
		if d.Status == "cancelled" && d.Scheduled == 0 {
			return false, saga.Abortf("order %s was cancelled before its delivery was scheduled", o.OrderID)
		}
		if d.ID != "" {
			return false, nil
		}
		*d = Delivery{ID: id, OrderID: o.OrderID, Address: addr, Status: "scheduled", Scheduled: 1,
			ScheduledFor: time.Now().UTC().Add(48 * time.Hour).Truncate(time.Hour)}
		return true, nil
	})
	return d, err
}

// cancel undoes a delivery, from the order alone; with none it records a
// cancelled one so that a late schedule is refused.
func (s *Service) cancel(ctx context.Context, p schemas.PaymentSucceeded, _ schemas.DeliveryScheduled) error {
	id := "del-" + p.OrderID
	_, err := kit.Update(ctx, s.store, "delivery."+id, func(v *Delivery) (bool, error) {
		if v.ID == "" {
			*v = Delivery{ID: id, OrderID: p.OrderID, Status: "cancelled"}
			return true, nil
		}
		if v.Status != "scheduled" {
			return false, nil
		}
		v.Status, v.Cancelled = "cancelled", v.Cancelled+1
		return true, nil
	})
	return err
}

// cancelBooked is cancel for version 3's book step.
func (s *Service) cancelBooked(ctx context.Context, p schemas.PaymentSucceeded, _ schemas.DeliveryBooked) error {
	return s.cancel(ctx, p, schemas.DeliveryScheduled{})
}

// Deliveries returns every delivery, for checkers and operators.
func Deliveries(ctx context.Context, d kit.Deps) ([]Delivery, error) {
	st, err := kit.OpenStore(ctx, d.JS, "shipping")
	if err != nil {
		return nil, err
	}
	keys, err := st.Keys(ctx)
	if err != nil {
		return nil, err
	}
	var out []Delivery
	for _, k := range keys {
		if len(k) > 9 && k[:9] == "delivery." {
			var v Delivery
			if err := st.Get(ctx, k, &v); err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// KnowsCustomer reports whether the replica has a customer's address.
func KnowsCustomer(ctx context.Context, d kit.Deps, id string) bool {
	st, err := kit.OpenStore(ctx, d.JS, "shipping")
	if err != nil {
		return false
	}
	var a schemas.Address
	return st.Get(ctx, "customer."+id, &a) == nil
}
