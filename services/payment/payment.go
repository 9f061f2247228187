// Package payment charges orders' cards and refunds them: the charge step
// of the order saga, compensated by a refund. It keeps a ledger of its own.
//
// It is also the shop's card vault, as a payment provider is: the gateway
// exchanges a card's number for a token (Tokenize, core NATS
// request/reply, which no stream stores) before the order goes further, and
// only the token travels in events. What the service keeps of a card, in
// its own bucket, is what it needs to charge it, never the number.
package payment

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
)

// DeclinedCard is refused by the card network; any other valid number
// succeeds (4242424242424242 is the usual one).
const DeclinedCard = "4000000000000002"

// TokenizeSubject is where the service exchanges a card number for a
// token.
const TokenizeSubject = "shop.payment.tokenize"

// ConfirmSubject is where the service takes a customer's confirmation of
// a payment, which the gateway hands on (NATS request/reply).
const ConfirmSubject = "shop.payment.confirm"

// ConfirmAboveEnv is the amount, in euros, above which an order's charge
// waits for the customer's confirmation (order flow version 4); default
// DefaultConfirmAbove.
const ConfirmAboveEnv = "CHOREO_CONFIRM_ABOVE"

// DefaultConfirmAbove is 100 EUR, in cents.
const DefaultConfirmAbove schemas.Money = 10000

// ConfirmAbove reads ConfirmAboveEnv: the amount (cents) above which an
// order waits for its customer's confirmation.
func ConfirmAbove() (schemas.Money, error) {
	raw := strings.TrimSpace(os.Getenv(ConfirmAboveEnv))
	if raw == "" {
		return DefaultConfirmAbove, nil
	}
	eur, err := strconv.ParseFloat(raw, 64)
	if err != nil || eur < 0 {
		return 0, fmt.Errorf("%s=%q: want an amount in euros (100, 49.90)", ConfirmAboveEnv, raw)
	}
	return schemas.Money(eur*100 + 0.5), nil
}

// TokenBucket is the bucket of the card tokens; TokenTTL is how long a
// token is kept after it was made or last used. A token pays for one
// order, within minutes, so a day is plenty.
const (
	TokenBucket = "payment_tokens"
	TokenTTL    = 24 * time.Hour
)

var (
	// ErrDeclined is the card network's refusal.
	ErrDeclined = errors.New("card declined")
	// ErrTokenRefused: the card token is another customer's, or paid for
	// another order already.
	ErrTokenRefused = errors.New("card token refused")
	// ErrNotConfirmable: the order waits for no confirmation of this
	// customer's (none asked, another customer's order, or over).
	ErrNotConfirmable = errors.New("no payment waits for this confirmation")
)

// ConfirmRequest is a customer's confirmation of an order's payment, as
// the gateway hands it on once it checked the customer's token.
type ConfirmRequest struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
}

// Confirmation is the answer to a ConfirmRequest.
type Confirmation struct {
	OrderID   string `json:"order_id"`
	PaymentID string `json:"payment_id"`
	Status    string `json:"status"` // confirmed
}

// Pending is a charge that waits for its customer's confirmation: what
// the service needs to charge it and to complete the saga's step.
type Pending struct {
	OrderID    string        `json:"order_id"`
	CustomerID string        `json:"customer_id"`
	Amount     schemas.Money `json:"amount"`
	Currency   string        `json:"currency"`
	Token      string        `json:"token"` // the charge step's completion token
	Until      time.Time     `json:"until"` // when the wait times out
}

// pendingKey is where a pending confirmation is kept, in the token bucket
// (a day is plenty for a wait of minutes; a key a card token never is).
func pendingKey(orderID string) string { return "confirm." + orderID }

// TokenizeRequest is a card to tokenize for a customer.
type TokenizeRequest struct {
	CustomerID string `json:"customer_id"`
	Number     string `json:"number"` // spaces allowed
}

// CardToken is what the service keeps of a card: what it needs to charge
// it, keyed by its token, and never the number. Here that is the simulated
// card network's answer, decided from the number when it is tokenized; a
// real provider keeps the number in its own vault instead.
type CardToken struct {
	Token      string    `json:"token"`
	CustomerID string    `json:"customer_id"` // who may pay with it
	Brand      string    `json:"brand"`
	Last4      string    `json:"last4"`
	Declines   bool      `json:"declines"`           // the card network refuses the card
	OrderID    string    `json:"order_id,omitempty"` // the order it paid for: a token pays for one
	CreatedAt  time.Time `json:"created_at"`
}

// Card is the token as an order carries it.
func (t CardToken) Card() schemas.Card {
	return schemas.Card{Token: t.Token, Brand: t.Brand, Last4: t.Last4}
}

// NewCardToken checks a card number and makes a token for it: domain
// logic. The token is 130 random bits, so it cannot be guessed.
func NewCardToken(customerID, number string, now time.Time) (CardToken, error) {
	number = strings.ReplaceAll(number, " ", "")
	if customerID == "" {
		return CardToken{}, kit.BadRequest{Msg: "customer_id is required"}
	}
	if len(number) < 12 || len(number) > 19 || strings.Trim(number, "0123456789") != "" {
		return CardToken{}, kit.BadRequest{Msg: "malformed card number: 12 to 19 digits"}
	}
	return CardToken{Token: "tok_" + rand.Text(), CustomerID: customerID, Brand: brand(number), Last4: number[len(number)-4:],
		Declines: number == DeclinedCard, CreatedAt: now}, nil
}

// brand names a card's network from its first digits.
func brand(number string) string {
	switch {
	case number[0] == '4':
		return "visa"
	case number[:2] >= "51" && number[:2] <= "55", number[:4] >= "2221" && number[:4] <= "2720":
		return "mastercard"
	case number[:2] == "34", number[:2] == "37":
		return "amex"
	}
	return "card"
}

// Use binds the token to the order it pays for: a token pays for one
// order, of the customer it was made for. It reports whether t changed.
func (t *CardToken) Use(o schemas.OrderPlaced) (bool, error) {
	switch {
	case t.CustomerID != o.CustomerID:
		return false, fmt.Errorf("%w: it was made for another customer", ErrTokenRefused)
	case t.OrderID == o.OrderID:
		return false, nil
	case t.OrderID != "":
		return false, fmt.Errorf("%w: it paid for order %s", ErrTokenRefused, t.OrderID)
	}
	t.OrderID = o.OrderID
	return true, nil
}

// Authorize is the card network: domain logic, no transport.
func Authorize(t CardToken, amount schemas.Money) error {
	if t.Declines {
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
	d      kit.Deps
	store  *kit.Store // the ledger
	tokens *kit.Store // the card tokens, and the pending confirmations
	above  schemas.Money
}

// New returns the service; Run starts it.
func New(d kit.Deps) *Service { return &Service{d: d} }

// Run tokenizes cards, charges and refunds until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var err error
	if s.above, err = ConfirmAbove(); err != nil {
		return err
	}
	if s.store, err = kit.OpenStore(ctx, s.d.JS, "payment"); err != nil {
		return err
	}
	if s.tokens, err = kit.OpenExpiringStore(ctx, s.d.JS, TokenBucket, TokenTTL); err != nil {
		return err
	}
	r, err := s.d.Runner()
	if err != nil {
		return err
	}
	if err := saga.Handle(r, schemas.Charge, s.charge, s.refund); err != nil {
		return err
	}
	if err := saga.Handle(r, schemas.ConfirmedCharge, s.chargeOrAsk, s.refund); err != nil {
		return err
	}
	return kit.Together(ctx, r.Run,
		func(ctx context.Context) error { return kit.Serve(ctx, s.d.NC, TokenizeSubject, s.Tokenize) },
		func(ctx context.Context) error { return kit.Serve(ctx, s.d.NC, ConfirmSubject, s.Confirm) })
}

// Tokenize keeps what the service needs to charge a card under a new
// token, and returns the token with the card's brand and last four digits.
func (s *Service) Tokenize(ctx context.Context, req TokenizeRequest) (schemas.Card, error) {
	t, err := NewCardToken(req.CustomerID, req.Number, time.Now().UTC())
	if err != nil {
		return schemas.Card{}, err
	}
	if _, err := kit.Update(ctx, s.tokens, t.Token, func(cur *CardToken) (bool, error) {
		if cur.Token != "" {
			return false, errors.New("card token collision") // 130 random bits: never
		}
		*cur = t
		return true, nil
	}); err != nil {
		return schemas.Card{}, err
	}
	return t.Card(), nil
}

func (s *Service) charge(ctx context.Context, o schemas.OrderPlaced) (schemas.PaymentSucceeded, error) {
	if err := s.authorize(ctx, o); err != nil {
		return schemas.PaymentSucceeded{}, err
	}
	return s.record(ctx, o)
}

// chargeOrAsk is the charge step of version 4: an order up to the
// threshold is charged at once; a bigger one has its card checked, then
// waits for its customer's confirmation (Confirm), which charges it and
// completes the step. The step is tried once (a wait that times out
// compensates it), so a passing failure is retried here.
func (s *Service) chargeOrAsk(ctx context.Context, o schemas.OrderPlaced) (schemas.PaymentSucceeded, error) {
	if o.Total <= s.above {
		return retryPassing(ctx, func() (schemas.PaymentSucceeded, error) { return s.charge(ctx, o) })
	}
	if _, err := retryPassing(ctx, func() (struct{}, error) { return struct{}{}, s.authorize(ctx, o) }); err != nil {
		return schemas.PaymentSucceeded{}, err
	}
	p := Pending{OrderID: o.OrderID, CustomerID: o.CustomerID, Amount: o.Total, Currency: o.Currency,
		Token: saga.CompletionToken(ctx), Until: time.Now().UTC().Add(schemas.ConfirmTimeout)}
	if _, err := retryPassing(ctx, func() (struct{}, error) { return struct{}{}, s.tokens.Put(ctx, pendingKey(o.OrderID), p) }); err != nil {
		return schemas.PaymentSucceeded{}, err
	}
	return saga.Later[schemas.PaymentSucceeded]()
}

// retryPassing runs fn again after a failure that is not an Abort, with a
// backoff, until it succeeds, aborts or ctx ends.
func retryPassing[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		v, err := fn()
		if err == nil || saga.IsAbort(err) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
		}
	}
}

// Confirm takes a customer's confirmation of an order's payment: it
// charges the card and completes the charge step that waits for it. A
// confirmation of another customer's order, of one that waits for none,
// or after the wait timed out is refused (the saga then compensates: a
// charge made as the wait timed out is refunded). Confirming twice
// answers the same.
func (s *Service) Confirm(ctx context.Context, req ConfirmRequest) (Confirmation, error) {
	var p Pending
	if err := s.tokens.Get(ctx, pendingKey(req.OrderID), &p); errors.Is(err, kit.ErrNotFound) {
		return Confirmation{}, kit.Conflict{Msg: fmt.Sprintf("%v: order %s", ErrNotConfirmable, req.OrderID)}
	} else if err != nil {
		return Confirmation{}, err
	}
	if p.CustomerID != req.CustomerID {
		return Confirmation{}, kit.Conflict{Msg: fmt.Sprintf("%v: order %s", ErrNotConfirmable, req.OrderID)}
	}
	tooLate := kit.Conflict{Msg: fmt.Sprintf("the confirmation of order %s came too late: the order is cancelled (and any charge refunded)", p.OrderID)}
	o := schemas.OrderPlaced{OrderID: p.OrderID, CustomerID: p.CustomerID, Total: p.Amount, Currency: p.Currency}
	// The saga, not what was saved when the wait began, says where the
	// charge stands: after a crash the action may have run again, so the
	// attempt that waits (and its token) is a later one than the saved.
	for range 8 {
		st, err := s.d.Sagas.Get(ctx, saga.Named(schemas.OrderFlowV4.Name()), p.OrderID)
		if err != nil {
			return Confirmation{}, err
		}
		charge := st.Step(schemas.ConfirmedCharge.Name())
		token := p.Token
		switch {
		case charge == nil:
			return Confirmation{}, kit.Conflict{Msg: fmt.Sprintf("%v: order %s", ErrNotConfirmable, req.OrderID)}
		case charge.Status == saga.StepCompleted:
			e, err := s.record(ctx, o) // recorded by the confirmation that completed it: the same charge
			if err != nil {
				return Confirmation{}, err
			}
			return Confirmation{OrderID: p.OrderID, PaymentID: e.PaymentID, Status: "confirmed"}, nil
		case charge.Status == saga.StepWaiting:
			token = charge.Token
		case charge.Status == saga.StepRunning && st.Status == saga.StatusRunning:
			// Its action is under way: Complete waits for its wait.
		default:
			return Confirmation{}, tooLate
		}
		e, err := s.record(ctx, o)
		if saga.IsAbort(err) {
			return Confirmation{}, kit.Conflict{Msg: err.Error()} // cancelled before it was charged
		}
		if err != nil {
			return Confirmation{}, err
		}
		err = schemas.ConfirmedCharge.Complete(ctx, s.d.Sagas, token, e)
		switch {
		case err == nil:
			return Confirmation{OrderID: p.OrderID, PaymentID: e.PaymentID, Status: "confirmed"}, nil
		case errors.Is(err, saga.ErrNotWaiting):
			continue // another attempt waits, or another confirmation won: read again
		case errors.Is(err, saga.ErrWaitOver), errors.Is(err, saga.ErrCompensated):
			// The step is compensated: its refund gives the charge back.
			return Confirmation{}, tooLate
		}
		return Confirmation{}, err
	}
	return Confirmation{}, fmt.Errorf("confirm order %s: the charge step kept moving", p.OrderID)
}

// authorize binds the order's card token to it and asks the card
// network; a refusal is announced (PaymentDeclined) and is an Abort.
func (s *Service) authorize(ctx context.Context, o schemas.OrderPlaced) error {
	t, err := kit.Update(ctx, s.tokens, o.Card.Token, func(t *CardToken) (bool, error) {
		if t.Token == "" {
			// Forged, expired, or not yet on the replica this read
			// reached: retried, and the step fails when retries run out.
			return false, fmt.Errorf("unknown card token %s", o.Card.Token)
		}
		return t.Use(o)
	})
	if errors.Is(err, ErrTokenRefused) {
		return saga.Abort(err)
	}
	if err != nil {
		return err
	}
	if err := Authorize(t, o.Total); err != nil {
		e := schemas.PaymentDeclined{OrderID: o.OrderID, Reason: err.Error(), Amount: o.Total, Time: time.Now().UTC()}
		if perr := events.Publish(ctx, s.d.Bus, schemas.TopicPaymentDeclined, "declined-"+o.OrderID, e); perr != nil {
			return perr // retried
		}
		return saga.Abort(err)
	}
	return nil
}

// record charges the order (once: the ledger's entry is keyed by the
// order) and announces it. A charge of an order whose charge was
// refunded as void first (it was compensated before) is an Abort.
func (s *Service) record(ctx context.Context, o schemas.OrderPlaced) (schemas.PaymentSucceeded, error) {
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
	e := schemas.PaymentSucceeded{PaymentID: id, OrderID: o.OrderID, CustomerID: o.CustomerID, Time: c.ChargedAt, Amount: c.Amount, Currency: c.Currency}
	// The card is charged: from here the step must not fail, since a
	// failed step is never compensated (it is taken to have done nothing).
	// So the event is published again until the broker takes it or the
	// step's time is up, which makes its outcome unknown, and an unknown
	// charge is refunded. (Returning the error would spend one of the
	// step's few attempts per failed publish, and a broker electing a
	// leader for some seconds would exhaust them: a failed step with a
	// live charge.)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		err := events.Publish(ctx, s.d.Bus, schemas.TopicPaymentSucceeded, id, e)
		if err == nil {
			return e, nil
		}
		s.d.Logger.Warn("payment: charged, but PaymentSucceeded not published yet: will publish it again", "saga", o.OrderID, "err", err)
		select {
		case <-ctx.Done():
			return schemas.PaymentSucceeded{}, err
		case <-time.After(wait):
		}
	}
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
