// Package order takes orders, starts the order saga for each, confirms the
// order (the saga's pivot) and records how it ended: confirmed, or
// rejected with the reason. It announces placed, confirmed and rejected
// orders as events.
package order

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
)

// PlaceSubject is where the service takes orders.
const PlaceSubject = "shop.order.place"

// PlaceRequest is an order as a customer makes it, with the card already
// exchanged for a token by the payment service (the gateway does that):
// the order service never sees a card's number.
type PlaceRequest struct {
	CustomerID string       `json:"customer_id"`
	Items      []Line       `json:"items"`
	Card       schemas.Card `json:"card"`
	// Key, when set, names the order for its customer: a request repeated
	// with the same key (its reply was lost, the client tried again) gets
	// the order the first one placed, not a second order. The key is the
	// client's Idempotency-Key, or the gateway's own for its retries.
	Key string `json:"idempotency_key,omitempty"`
}

// MaxKeyLen is the longest idempotency key taken.
const MaxKeyLen = 200

// CheckKey says what is wrong with an idempotency key, or nil: 1 to
// MaxKeyLen visible ASCII characters.
func CheckKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("an idempotency key has 1 to %d characters, this one %d", MaxKeyLen, len(key))
	}
	for _, c := range []byte(key) {
		if c <= ' ' || c > '~' {
			return errors.New("an idempotency key has visible ASCII characters only")
		}
	}
	return nil
}

// KeyedID is the id of the order a customer places with an idempotency
// key: the same for every repeat of the request, and never an id NewID
// makes (those have 22 characters after "ord-", these 24).
func KeyedID(customerID, key string) string {
	sum := sha256.Sum256([]byte(customerID + "\x00" + key))
	return "ord-" + hex.EncodeToString(sum[:12])
}

// Line is an item of an order as a customer makes it.
type Line struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// PlaceResult names the new order.
type PlaceResult struct {
	ID    string        `json:"id"`
	Total schemas.Money `json:"total"`
	// Replayed: the request repeated one that placed this order already.
	// Status and Reason are then the order's now. (A repeat of a request
	// whose order could not start gets that request's 503 again.)
	Replayed bool   `json:"replayed,omitempty"`
	Status   string `json:"status,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Order is the service's record of an order. It is also the outbox of
// what placing it sets off: a pending order that is not Started has its
// OrderPlaced published and its saga started by Place, or, if Place was
// cut short (a crash, the broker away), by the reconciler.
type Order struct {
	schemas.OrderPlaced
	Status    string    `json:"status"` // pending, confirmed or rejected
	Reason    string    `json:"reason,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	// Started: the order was announced and its saga started.
	Started bool `json:"started,omitempty"`
	// Key is the idempotency key it was placed with, if any.
	Key string `json:"idempotency_key,omitempty"`
}

// Price checks an order and prices it from the catalog: domain logic.
func Price(id string, req PlaceRequest, now time.Time) (schemas.OrderPlaced, error) {
	bad := func(format string, args ...any) (schemas.OrderPlaced, error) {
		return schemas.OrderPlaced{}, kit.BadRequest{Msg: fmt.Sprintf(format, args...)}
	}
	if req.CustomerID == "" {
		return bad("customer_id is required")
	}
	if len(req.Items) == 0 {
		return bad("an order needs at least one item")
	}
	if req.Card.Token == "" {
		return bad("card is required: the payment service's token for it")
	}
	o := schemas.OrderPlaced{OrderID: id, CustomerID: req.CustomerID, Currency: schemas.Currency, Card: req.Card, PlacedAt: now}
	for _, it := range req.Items {
		p, ok := schemas.ProductBySKU(it.SKU)
		if !ok {
			return bad("unknown sku %q", it.SKU)
		}
		if it.Qty < 1 || it.Qty > 1000 {
			return bad("quantity of %s must be 1 to 1000", it.SKU)
		}
		o.Items = append(o.Items, schemas.Item{SKU: it.SKU, Qty: it.Qty, UnitPrice: p.Price})
		o.Total += p.Price * int64(it.Qty)
	}
	if err := schemas.ValidateValue("OrderPlaced", o); err != nil {
		return bad("invalid order: %v", err)
	}
	return o, nil
}

// Service is the order service.
type Service struct {
	d     kit.Deps
	store *kit.Store
	opts  options
	// flow is the order flow version this build starts orders on
	// (kit.OrderFlow): saga.Start starts exactly that one.
	flow *saga.Flow[schemas.OrderPlaced]
}

type options struct {
	every, after time.Duration
	stop         func(point string) bool
}

// Option configures the service.
type Option func(*options)

// Reconcile sets how often the service looks for orders recorded but not
// started (default every 10 s), and how old such an order must be before
// the reconciler starts it (default 30 s: older than any Place still
// under way, so that the two never race to settle one order).
func Reconcile(every, after time.Duration) Option {
	return func(o *options) {
		if every > 0 {
			o.every = every
		}
		if after >= 0 {
			o.after = after
		}
	}
}

// StopAt is for tests: Place calls stop after each of its writes, naming
// it ("recorded", "announced", "started"), and when it returns true Place
// stops there without another write, as a process killed at that point
// would.
func StopAt(stop func(point string) bool) Option {
	return func(o *options) { o.stop = stop }
}

// New returns the service; Run starts it.
func New(d kit.Deps, opts ...Option) *Service {
	s := &Service{d: d, opts: options{every: 10 * time.Second, after: 30 * time.Second}}
	if after, ok := kit.ReconcileAfter(); ok { // the fault-injection build
		s.opts.after = after
	}
	for _, o := range opts {
		o(&s.opts)
	}
	return s
}

// errStopped: a test's StopAt stopped Place.
var errStopped = errors.New("order: stopped at a crash point")

func (s *Service) crashPoint(point string) error {
	kit.Crash(point, "place") // the fault-injection build kills the process here
	if s.opts.stop != nil && s.opts.stop(point) {
		return errStopped
	}
	return nil
}

// Run takes orders, confirms them and records their ends until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var err error
	if s.flow, err = kit.OrderFlow(); err != nil {
		return err
	}
	if s.store, err = kit.OpenStore(ctx, s.d.JS, "orders"); err != nil {
		return err
	}
	r, err := s.d.Runner()
	if err != nil {
		return err
	}
	if err := saga.Handle(r, schemas.Confirm, s.confirm, nil); err != nil {
		return err
	}
	if err := r.OnEnd(schemas.OrderFlow, "order", s.ended); err != nil {
		return err
	}
	return kit.Together(ctx, r.Run, s.reconcile, func(ctx context.Context) error { return kit.Serve(ctx, s.d.NC, PlaceSubject, s.Place) })
}

// reconcile drains the outbox: at start and every opts.every, it
// announces and starts every pending order that is not Started and older
// than opts.after (Place was cut short between its writes). At start it
// also starts again the saga of every pending order that has none: its
// saga was lost with the saga stream (deleted while the order ran).
// Starting again is safe: the event's id and the saga's are the order's,
// so a repeat is dropped, and every step's idempotency key is the one it
// had, so an effect already made is not made twice.
func (s *Service) reconcile(ctx context.Context) error {
	s.reconcileOnce(ctx, true)
	t := time.NewTicker(s.opts.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.reconcileOnce(ctx, false)
		}
	}
}

func (s *Service) reconcileOnce(ctx context.Context, atStart bool) {
	cutoff := time.Now().Add(-s.opts.after)
	var unstarted, started []schemas.OrderPlaced
	err := s.store.Each(ctx, func(_ string, data []byte) error {
		var o Order
		if json.Unmarshal(data, &o) != nil || o.Status != "pending" {
			return nil
		}
		switch {
		case !o.Started && o.PlacedAt.Before(cutoff):
			unstarted = append(unstarted, o.OrderPlaced)
		case o.Started && atStart:
			started = append(started, o.OrderPlaced)
		}
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			s.d.Logger.Error("order: cannot look for pending orders to start", "err", err)
		}
		return
	}
	for _, o := range started {
		if _, err := s.d.Sagas.Get(ctx, schemas.OrderFlow, o.OrderID); errors.Is(err, saga.ErrNotFound) {
			unstarted = append(unstarted, o)
			s.d.Logger.Warn("order: pending order has no saga (lost with the saga stream?): starting it again", "saga", o.OrderID)
		}
	}
	for _, o := range unstarted {
		if err := s.launch(ctx, o); err != nil {
			s.d.Logger.Error("order: pending order not started, will try again", "saga", o.OrderID, "err", err)
			continue
		}
		s.d.Logger.Warn("order: started a pending order that was recorded but not started", "saga", o.OrderID)
	}
}

// launch announces a recorded order and starts its saga, then marks it
// Started. Each write is safe to repeat.
func (s *Service) launch(ctx context.Context, o schemas.OrderPlaced) error {
	if err := events.Publish(ctx, s.d.Bus, schemas.TopicOrderPlaced, o.OrderID, o); err != nil {
		return err
	}
	if err := s.crashPoint("announced"); err != nil {
		return err
	}
	if err := saga.Start(ctx, s.d.Sagas, s.flow, o.OrderID, o); err != nil {
		return err
	}
	if err := s.crashPoint("started"); err != nil {
		return err
	}
	// Not marked, the reconciler starts it again: harmless.
	_, err := kit.Update(ctx, s.store, o.OrderID, func(cur *Order) (bool, error) {
		if cur.Started || cur.OrderID == "" {
			return false, nil
		}
		cur.Started = true
		return true, nil
	})
	if err != nil {
		s.d.Logger.Warn("order: started, but not marked so", "saga", o.OrderID, "err", err)
	}
	return nil
}

// Place accepts an order: it is recorded as pending (the outbox), then
// announced and its saga started (launch). The record comes first, so an
// order's saga never runs without it; a Place cut short after it is
// finished by the reconciler.
func (s *Service) Place(ctx context.Context, req PlaceRequest) (PlaceResult, error) {
	id := kit.NewID("ord")
	if req.Key != "" {
		if err := CheckKey(req.Key); err != nil {
			return PlaceResult{}, kit.BadRequest{Msg: err.Error()}
		}
		id = KeyedID(req.CustomerID, req.Key)
	}
	o, err := Price(id, req, time.Now().UTC())
	if err != nil {
		return PlaceResult{}, err
	}
	// Create, never overwrite: a repeated id must not merge two orders. A
	// repeat of a keyed request finds its order.
	var had *Order
	if _, err := kit.Update(ctx, s.store, o.OrderID, func(cur *Order) (bool, error) {
		if cur.OrderID == "" {
			*cur = Order{OrderPlaced: o, Status: "pending", UpdatedAt: o.PlacedAt, Key: req.Key}
			return true, nil
		}
		if req.Key == "" || cur.Key != req.Key || cur.CustomerID != o.CustomerID {
			return false, fmt.Errorf("order id %s is taken", o.OrderID)
		}
		if !sameLines(cur.Items, o.Items) {
			return false, kit.Conflict{Msg: fmt.Sprintf("idempotency key %q was used for order %s, with other items: a new order needs a new key", req.Key, cur.OrderID)}
		}
		had = cur
		return false, nil
	}); err != nil {
		return PlaceResult{}, err
	}
	if had != nil {
		// A repeat: the first request placed the order. If it was cut
		// short before the saga started, this one finishes its work (the
		// same writes, each safe to repeat).
		o = had.OrderPlaced
		if had.Status == "rejected" && !had.Started {
			return PlaceResult{}, notPlaced(o.OrderID, had.Reason)
		}
		if had.Status != "pending" || had.Started {
			return PlaceResult{ID: o.OrderID, Total: o.Total, Replayed: true, Status: had.Status, Reason: had.Reason}, nil
		}
	} else if err := s.crashPoint("recorded"); err != nil {
		return PlaceResult{}, err
	}
	if err := s.launch(ctx, o); errors.Is(err, errStopped) {
		return PlaceResult{}, err
	} else if err != nil {
		// nil when the saga started after all: the order is placed.
		if err := s.notStarted(ctx, o, err); err != nil {
			return PlaceResult{}, err
		}
	}
	return PlaceResult{ID: o.OrderID, Total: o.Total, Replayed: had != nil}, nil
}

// sameLines reports whether two orders have the same items, in order.
func sameLines(a, b []schemas.Item) bool {
	return slices.EqualFunc(a, b, func(x, y schemas.Item) bool { return x.SKU == y.SKU && x.Qty == y.Qty })
}

// notStarted settles an order whose saga could not be started (a stream
// is missing, the broker is unreachable), so that it never stays pending:
// unless its saga exists after all (the start's acknowledgement was
// lost), the order is rejected with the reason and the caller is told to
// try again. If even that cannot be recorded, the order stays pending and
// the reconciler starts its saga.
func (s *Service) notStarted(ctx context.Context, o schemas.OrderPlaced, cause error) error {
	if _, err := s.d.Sagas.Get(ctx, schemas.OrderFlow, o.OrderID); err == nil {
		return nil
	}
	reason := "the shop could not start the order: " + cause.Error()
	now := time.Now().UTC()
	_, err := kit.Update(ctx, s.store, o.OrderID, func(cur *Order) (bool, error) {
		if cur.Status != "pending" {
			return false, nil
		}
		cur.Status, cur.Reason, cur.UpdatedAt = "rejected", reason, now
		return true, nil
	})
	if err == nil {
		err = events.Publish(ctx, s.d.Bus, schemas.TopicOrderRejected, "rejected-"+o.OrderID+"-unstarted",
			schemas.OrderRejected{OrderID: o.OrderID, CustomerID: o.CustomerID, Reason: reason, RejectedAt: now})
	}
	if err != nil {
		s.d.Logger.Error("order: its saga did not start and its rejection was not recorded", "saga", o.OrderID, "cause", cause, "err", err)
	}
	return notPlaced(o.OrderID, reason)
}

// notPlaced is the answer to a request whose order could not start, and
// to every repeat of it: the order is rejected, so its idempotency key is
// spent, and placing the order again takes a new one.
func notPlaced(id, reason string) error {
	return kit.Unavailable{Msg: fmt.Sprintf("%s (order %s was not placed; %s)", reason, id, KeySpent)}
}

// KeySpent ends the message of a 503 whose order was rejected before it
// started: a client that sent an Idempotency-Key tries again with a new
// one (with the same one, it gets this answer again).
const KeySpent = "to try again, send a new Idempotency-Key"

func (s *Service) confirm(ctx context.Context, o schemas.OrderPlaced) (schemas.OrderConfirmed, error) {
	return schemas.OrderConfirmed{OrderID: o.OrderID, CustomerID: o.CustomerID, Total: o.Total, Currency: o.Currency, ConfirmedAt: time.Now().UTC()}, nil
}

// ended records how an order's saga ended, and announces it.
func (s *Service) ended(ctx context.Context, st *saga.State) error {
	status, reason := "confirmed", ""
	if st.Status != saga.StatusCompleted {
		status, reason = "rejected", st.Reason
		if st.Status == saga.StatusCompensationFailed {
			reason += " (a compensation is stuck: an operator must retry it)"
		}
	}
	o, err := kit.Update(ctx, s.store, st.ID, func(o *Order) (bool, error) {
		if o.OrderID == "" {
			// Every saga's order is recorded before it starts: retrying
			// cannot help. Dead-lettered, for an operator to look at.
			return false, saga.Abortf("no order %s: its saga ended %s, but the order service has no record of it", st.ID, st.Status)
		}
		if o.Status == status && o.Reason == reason {
			return false, nil
		}
		o.Status, o.Reason, o.UpdatedAt = status, reason, st.EndedAt
		return true, nil
	})
	if err != nil {
		return err
	}
	if status == "confirmed" {
		return events.Publish(ctx, s.d.Bus, schemas.TopicOrderConfirmed, "confirmed-"+o.OrderID,
			schemas.OrderConfirmed{OrderID: o.OrderID, CustomerID: o.CustomerID, Total: o.Total, Currency: o.Currency, ConfirmedAt: st.EndedAt})
	}
	return events.Publish(ctx, s.d.Bus, schemas.TopicOrderRejected, fmt.Sprintf("rejected-%s-%d", o.OrderID, st.Epoch),
		schemas.OrderRejected{OrderID: o.OrderID, CustomerID: o.CustomerID, Reason: reason, RejectedAt: st.EndedAt})
}

// Orders returns every order, for checkers and operators.
func Orders(ctx context.Context, d kit.Deps) ([]Order, error) {
	return kit.All[Order](ctx, d.JS, "orders")
}
