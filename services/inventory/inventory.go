// Package inventory reserves stock for orders: the reserve step of the
// order saga, compensated by a release. It owns the stock of the catalog.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
)

// Warehouse is the service's working state: one value, so that a
// reservation and the stock it takes change together or not at all. It
// holds the reservations of orders whose saga is still under way; once a
// saga has ended, no step of it runs again, and its reservation moves to
// the archive, a key of its own (see Service.ended). Without that the one
// value grows with every order ever placed, and every reservation rewrites
// all of them.
type Warehouse struct {
	Stock        map[string]int          `json:"stock"`
	Reservations map[string]*Reservation `json:"reservations"`
	// Version grows with every change of Stock: the version of the
	// StockChanged event that announces it.
	Version int64 `json:"version,omitempty"`
}

// Levels is the stock as StockChanged announces it, in catalog order.
func (w *Warehouse) Levels() []schemas.StockLevel {
	out := make([]schemas.StockLevel, 0, len(schemas.Products))
	for _, p := range schemas.Products {
		out = append(out, schemas.StockLevel{SKU: p.SKU, Stock: w.Stock[p.SKU]})
	}
	return out
}

// Reservation is stock put aside for an order.
type Reservation struct {
	ID       string         `json:"id"`
	OrderID  string         `json:"order_id"`
	Items    []schemas.Item `json:"items"`
	Status   string         `json:"status"` // reserved or released
	Reserved int            `json:"reserved"`
	Released int            `json:"released"`
	Time     time.Time      `json:"time"`
}

// Reserve takes items from stock for an order: domain logic, no transport.
// It returns a saga.Abort error when an item is short.
func (w *Warehouse) Reserve(orderID string, items []schemas.Item, now time.Time) (*Reservation, bool, error) {
	if r := w.Reservations["res-"+orderID]; r != nil {
		if r.Status != "reserved" {
			return nil, false, saga.Abortf("order %s was cancelled before its stock was reserved", orderID)
		}
		return r, false, nil // the same reservation again
	}
	for _, it := range items {
		if w.Stock[it.SKU] < it.Qty {
			return nil, false, saga.Abortf("out of stock: %s (%d wanted, %d left)", it.SKU, it.Qty, w.Stock[it.SKU])
		}
	}
	for _, it := range items {
		w.Stock[it.SKU] -= it.Qty
	}
	r := &Reservation{ID: "res-" + orderID, OrderID: orderID, Items: items, Status: "reserved", Reserved: 1, Time: now}
	w.Reservations[r.ID] = r
	return r, true, nil
}

// Release gives an order's reserved stock back. With no reservation (its
// reserve timed out before making one) it records a released one, so that
// a late reserve is refused.
func (w *Warehouse) Release(orderID string, now time.Time) bool {
	r := w.Reservations["res-"+orderID]
	if r == nil {
		w.Reservations["res-"+orderID] = &Reservation{ID: "res-" + orderID, OrderID: orderID, Status: "released", Time: now}
		return true
	}
	if r.Status != "reserved" {
		return false
	}
	for _, it := range r.Items {
		w.Stock[it.SKU] += it.Qty
	}
	r.Status, r.Released = "released", r.Released+1
	return true
}

// Service is the inventory service.
type Service struct {
	d       kit.Deps
	store   *kit.Store
	archive *kit.Store
	// writes queues this instance's changes of the warehouse for one
	// writer, which applies all that are waiting in one compare-and-set
	// (a group commit). Every reservation changes that one value: a
	// hundred handlers each racing for it would lose all but one race a
	// round and read it again, a hundred times each.
	writes chan *change
	closed chan struct{} // the writer has stopped
	// stock is the newest stock this instance wrote or read, for the
	// announcer; changed wakes it.
	stock   atomic.Pointer[schemas.StockChanged]
	changed chan struct{}
}

// change is a handler's change of the warehouse, waiting for the writer.
// apply changes w or returns why not, leaving it as it was; it may be
// called again, with the warehouse read again, when a write loses a race.
type change struct {
	apply func(w *Warehouse) (bool, error)
	done  chan error
}

// New returns the service; Run starts it.
func New(d kit.Deps) *Service {
	return &Service{d: d, writes: make(chan *change), closed: make(chan struct{}), changed: make(chan struct{}, 1)}
}

const (
	key     = "warehouse"
	archive = "inventory-archive" // the bucket of ended orders' reservations
)

// ArchiveBucket is the bucket of ended orders' reservations (the service
// also keeps the bucket "inventory").
const ArchiveBucket = archive

// Run seeds the stock (once), then reserves and releases, and announces
// every change of the stock (StockChanged), until ctx ends. Nobody asks
// inventory for its stock: whoever shows it keeps a copy from the events.
func (s *Service) Run(ctx context.Context) error {
	var err error
	if s.store, err = kit.OpenStore(ctx, s.d.JS, "inventory"); err != nil {
		return err
	}
	if s.archive, err = kit.OpenStore(ctx, s.d.JS, archive); err != nil {
		return err
	}
	w, err := kit.Update(ctx, s.store, key, func(w *Warehouse) (bool, error) {
		if w.Stock != nil {
			if w.Version == 0 { // written before versions
				w.Version = 1
				return true, nil
			}
			return false, nil
		}
		w.Stock, w.Reservations, w.Version = map[string]int{}, map[string]*Reservation{}, 1
		for _, p := range schemas.Products {
			w.Stock[p.SKU] = p.InitialStock
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("seed stock: %w", err)
	}
	// Announced on every start: a change whose announcement a crash lost
	// is announced now (a repeat changes nothing for a reader).
	s.noteStock(&w)
	r, err := s.d.Runner()
	if err != nil {
		return err
	}
	if err := saga.Handle(r, schemas.Reserve, s.reserve, s.release); err != nil {
		return err
	}
	if err := r.OnEnd(schemas.OrderFlow, "inventory", s.ended); err != nil {
		return err
	}
	return kit.Together(ctx, r.Run, s.writer, s.announce)
}

// noteStock hands the stock of w to the announcer, if it is newer than
// what it has.
func (s *Service) noteStock(w *Warehouse) {
	e := &schemas.StockChanged{Version: w.Version, Levels: w.Levels(), Time: time.Now().UTC()}
	for {
		cur := s.stock.Load()
		if cur != nil && cur.Version >= e.Version {
			return
		}
		if s.stock.CompareAndSwap(cur, e) {
			break
		}
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// announce publishes the newest stock each time it changes (StockChanged,
// its id the version, so a repeat is dropped by the broker), retrying
// every second while the broker refuses it.
func (s *Service) announce(ctx context.Context) error {
	var done int64
	for {
		var retry <-chan time.Time
		if e := s.stock.Load(); e != nil && e.Version > done {
			err := events.Publish(ctx, s.d.Bus, schemas.TopicStockChanged, fmt.Sprintf("stock-%d", e.Version), *e)
			if err == nil {
				done = e.Version
			} else if ctx.Err() == nil {
				s.d.Logger.Warn("inventory: cannot announce the stock, will retry", "version", e.Version, "err", err)
				retry = time.After(time.Second)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
		case <-retry:
		}
	}
}

// maxBatch bounds the changes one write carries.
const maxBatch = 256

// writer applies the waiting changes, as many as are queued, in one write.
func (s *Service) writer(ctx context.Context) error {
	defer close(s.closed)
	for {
		var batch []*change
		select {
		case c := <-s.writes:
			batch = append(batch, c)
		case <-ctx.Done():
			return nil
		}
	more:
		for len(batch) < maxBatch {
			select {
			case c := <-s.writes:
				batch = append(batch, c)
			default:
				break more
			}
		}
		errs := make([]error, len(batch))
		w, err := kit.Update(ctx, s.store, key, func(w *Warehouse) (bool, error) {
			before := maps.Clone(w.Stock)
			changed := false
			for i, c := range batch {
				ch, err := c.apply(w)
				errs[i], changed = err, changed || ch
			}
			if !maps.Equal(before, w.Stock) {
				w.Version++
			}
			return changed, nil
		})
		if err == nil {
			s.noteStock(&w)
		}
		for i, c := range batch {
			if err != nil {
				c.done <- err // not written: every change in it failed
			} else {
				c.done <- errs[i]
			}
		}
	}
}

// write has apply made by the writer, and returns its outcome.
func (s *Service) write(ctx context.Context, apply func(w *Warehouse) (bool, error)) error {
	c := &change{apply: apply, done: make(chan error, 1)}
	select {
	case s.writes <- c:
	case <-s.closed:
		return errors.New("inventory: shutting down")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return ctx.Err() // it may be made yet: a retry finds it made
	}
}

func (s *Service) reserve(ctx context.Context, p schemas.PaymentSucceeded) (schemas.StockReserved, error) {
	o, err := saga.InputOf[schemas.OrderPlaced](ctx)
	if err != nil {
		return schemas.StockReserved{}, err
	}
	var res *Reservation
	err = s.write(ctx, func(w *Warehouse) (bool, error) {
		old, err := s.archived(ctx, w, o.OrderID)
		if err != nil || old != nil {
			// A call that outlived its saga: answered as the warehouse
			// would have, changing nothing (a tombstone refuses it).
			res = old
			if err == nil && old.Status != "reserved" {
				err = saga.Abortf("order %s was cancelled before its stock was reserved", o.OrderID)
			}
			return false, err
		}
		r, changed, err := w.Reserve(o.OrderID, o.Items, time.Now().UTC())
		res = r
		return changed, err
	})
	if err != nil {
		return schemas.StockReserved{}, err
	}
	return schemas.StockReserved{ReservationID: res.ID, OrderID: o.OrderID, Items: res.Items, Time: res.Time}, nil
}

// release undoes a reservation, from the order alone (see Warehouse.Release).
func (s *Service) release(ctx context.Context, p schemas.PaymentSucceeded, _ schemas.StockReserved) error {
	return s.write(ctx, func(w *Warehouse) (bool, error) {
		if old, err := s.archived(ctx, w, p.OrderID); err != nil || old != nil {
			return false, err // ended: released already, or kept by a completed order
		}
		return w.Release(p.OrderID, time.Now().UTC()), nil
	})
}

// archived returns the reservation of an ended order that is no longer in
// w, the warehouse as just read, or nil. An ended order's reservation is
// copied to the archive before it leaves the warehouse, so reading the
// archive after a warehouse that lacks it finds it; and if the warehouse
// changes meanwhile, the compare-and-set of this update fails and both are
// read again.
func (s *Service) archived(ctx context.Context, w *Warehouse, orderID string) (*Reservation, error) {
	if w.Reservations["res-"+orderID] != nil {
		return nil, nil
	}
	var r Reservation
	err := s.archive.Get(ctx, "res-"+orderID, &r)
	if errors.Is(err, kit.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ended moves the reservation of an order whose saga has completed or was
// compensated to the archive: first the copy, then the removal, so that a
// crash between the two leaves it in both places and the next delivery
// finishes. A saga whose compensation failed keeps its reservation in the
// warehouse: an operator's retry may release it yet.
func (s *Service) ended(ctx context.Context, st *saga.State) error {
	if st.Status != saga.StatusCompleted && st.Status != saga.StatusCompensated {
		return nil
	}
	var w Warehouse
	if err := s.store.Get(ctx, key, &w); err != nil {
		return err
	}
	r := w.Reservations["res-"+st.ID]
	if r == nil {
		return nil // never reserved, or moved already
	}
	if err := s.archive.Put(ctx, r.ID, r); err != nil {
		return err
	}
	return s.write(ctx, func(w *Warehouse) (bool, error) {
		if w.Reservations[r.ID] == nil {
			return false, nil
		}
		delete(w.Reservations, r.ID)
		return true, nil
	})
}

// State returns the warehouse with the archived reservations, for checkers
// and operators.
func State(ctx context.Context, d kit.Deps) (Warehouse, error) {
	var w Warehouse
	st, err := kit.OpenStore(ctx, d.JS, "inventory")
	if err != nil {
		return w, err
	}
	if err := st.Get(ctx, key, &w); err != nil {
		return w, err
	}
	// Read after the warehouse: a reservation moved meanwhile was archived
	// before it left, so it is in one or the other.
	old, err := kit.All[Reservation](ctx, d.JS, archive)
	if err != nil {
		return w, err
	}
	if w.Reservations == nil {
		w.Reservations = map[string]*Reservation{}
	}
	for _, r := range old {
		if w.Reservations[r.ID] == nil {
			w.Reservations[r.ID] = &r
		}
	}
	return w, nil
}
