// Package payment charges orders' cards and refunds them: the charge step
// of the order saga, compensated by a refund. It keeps a ledger of its own.
package payment

import (
	"context"
	"errors"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
)

// DeclinedCard is refused by the card network; any other valid number
// succeeds (4242424242424242 is the usual one).
const DeclinedCard = "4000000000000002"

// ErrDeclined is the card network's refusal.
var ErrDeclined = errors.New("card declined")

// Authorize is the card network: domain logic, no transport.
func Authorize(card string, amount schemas.Money) error {
	if card == DeclinedCard {
		return ErrDeclined
	}
	return nil
}

// Charge is an entry of the ledger.
type Charge struct {
	PaymentID  string        `json:"payment_id"`
	OrderID    string        `json:"order_id"`
	Amount     schemas.Money `json:"amount"`
	Currency   string        `json:"currency"`
	Status     string        `json:"status"` // charged or refunded
	Charges    int           `json:"charges"`
	Refunds    int           `json:"refunds"`
	ChargedAt  time.Time     `json:"charged_at"`
	RefundedAt time.Time     `json:"refunded_at,omitzero"`
}

// Service is the payment service.
type Service struct {
	d     kit.Deps
	store *kit.Store
}

// New returns the service; Run starts it.
func New(d kit.Deps) *Service { return &Service{d: d} }

// Run charges and refunds until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var err error
	if s.store, err = kit.OpenStore(ctx, s.d.JS, "payment"); err != nil {
		return err
	}
	r, err := s.d.Runner()
	if err != nil {
		return err
	}
	if err := saga.Handle(r, schemas.Charge, s.charge, s.refund); err != nil {
		return err
	}
	return r.Run(ctx)
}

func (s *Service) charge(ctx context.Context, o schemas.OrderPlaced) (schemas.PaymentSucceeded, error) {
	if err := Authorize(o.Card, o.Total); err != nil {
		e := schemas.PaymentDeclined{OrderID: o.OrderID, Reason: err.Error(), Amount: o.Total, Time: time.Now().UTC()}
		if perr := events.Publish(ctx, s.d.Bus, schemas.TopicPaymentDeclined, "declined-"+o.OrderID, e); perr != nil {
			return schemas.PaymentSucceeded{}, perr // retried
		}
		return schemas.PaymentSucceeded{}, saga.Abort(err)
	}
	id := "pay-" + o.OrderID
	c, err := kit.Update(ctx, s.store, id, func(c *Charge) (bool, error) {
		if c.Status == "void" {
			return false, saga.Abortf("order %s was cancelled before it was charged", o.OrderID)
		}
		if c.PaymentID != "" {
			return false, nil // charged already: the same charge again
		}
		*c = Charge{PaymentID: id, OrderID: o.OrderID, Amount: o.Total, Currency: o.Currency, Status: "charged", Charges: 1, ChargedAt: time.Now().UTC()}
		return true, nil
	})
	if err != nil {
		return schemas.PaymentSucceeded{}, err
	}
	e := schemas.PaymentSucceeded{PaymentID: id, OrderID: o.OrderID, Time: c.ChargedAt, Amount: c.Amount, Currency: c.Currency}
	if err := events.Publish(ctx, s.d.Bus, schemas.TopicPaymentSucceeded, id, e); err != nil {
		return schemas.PaymentSucceeded{}, err
	}
	return e, nil
}

// refund undoes a charge. It works from the order alone: after a timed-out
// charge there is no PaymentSucceeded, and maybe no charge, in which case
// it leaves a void record so that a late charge is refused.
func (s *Service) refund(ctx context.Context, o schemas.OrderPlaced, _ schemas.PaymentSucceeded) error {
	id := "pay-" + o.OrderID
	c, err := kit.Update(ctx, s.store, id, func(c *Charge) (bool, error) {
		if c.PaymentID == "" {
			*c = Charge{PaymentID: id, OrderID: o.OrderID, Status: "void"}
			return true, nil
		}
		if c.Status != "charged" {
			return false, nil // refunded already, or void
		}
		c.Status, c.Refunds, c.RefundedAt = "refunded", c.Refunds+1, time.Now().UTC()
		return true, nil
	})
	if err != nil {
		return err
	}
	if c.Status != "refunded" {
		return nil
	}
	return events.Publish(ctx, s.d.Bus, schemas.TopicPaymentRefunded, "refund-"+id,
		schemas.PaymentRefunded{PaymentID: id, OrderID: o.OrderID, Amount: c.Amount, Currency: c.Currency, Time: c.RefundedAt})
}

// Ledger returns every charge, for checkers and operators.
func Ledger(ctx context.Context, d kit.Deps) ([]Charge, error) {
	return kit.All[Charge](ctx, d.JS, "payment")
}
