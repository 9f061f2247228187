package gateway

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/choreo-go/choreo/schemas"
)

// OrderRow is an order in the read model.
type OrderRow struct {
	ID         string         `json:"id"`
	CustomerID string         `json:"customer_id"`
	Status     string         `json:"status"` // pending, confirmed or rejected
	Reason     string         `json:"reason"`
	Total      schemas.Money  `json:"total"`
	Currency   string         `json:"currency"`
	Items      []schemas.Item `json:"items"`
	PlacedAt   time.Time      `json:"placed_at"`
	UpdatedAt  time.Time      `json:"updated_at"`
}

// Stats are the shop's counters, built from events.
type Stats struct {
	Customers         int           `json:"customers"`
	Orders            int           `json:"orders"`
	OrdersConfirmed   int           `json:"orders_confirmed"`
	OrdersRejected    int           `json:"orders_rejected"`
	PaymentsSucceeded int           `json:"payments_succeeded"`
	PaymentsFailed    int           `json:"payments_failed"`
	Refunds           int           `json:"refunds"`
	Charged           schemas.Money `json:"charged"`
	Refunded          schemas.Money `json:"refunded"`
	Revenue           schemas.Money `json:"revenue"` // charged less refunded
	Currency          string        `json:"currency"`
}

// ReadModel is the gateway's materialized view of orders, customers and
// counters, built only from events: it can be thrown away and rebuilt by
// replaying the stream.
//
// The counters are a function of the events alone, whatever order they
// arrive in and however often: each counts the distinct things the events
// name (orders placed, each order's outcome, payments by their id), never
// the rows, which the gateway also writes itself (Pending).
type ReadModel struct {
	mu        sync.RWMutex
	orders    map[string]*OrderRow
	customers map[string]schemas.CustomerRegistered
	stats     Stats
	seen      map[string]bool // event ids applied: a replayed duplicate counts once

	placed   map[string]bool          // orders whose OrderPlaced was applied
	outcome  map[string]string        // order id -> confirmed or rejected, from their events
	charges  map[string]schemas.Money // payment id -> amount charged
	refunds  map[string]schemas.Money // payment id -> amount refunded
	declines map[string]bool          // orders whose card was declined

	stock StockView // the newest StockChanged
}

// StockView is the inventory's stock as its newest event announced it.
type StockView struct {
	Version int64          // 0: no stock event seen yet
	Levels  map[string]int // by SKU
	At      time.Time      // when inventory announced it
}

// NewReadModel returns an empty read model.
func NewReadModel() *ReadModel {
	return &ReadModel{orders: map[string]*OrderRow{}, customers: map[string]schemas.CustomerRegistered{},
		seen: map[string]bool{}, stats: Stats{Currency: schemas.Currency},
		placed: map[string]bool{}, outcome: map[string]string{}, charges: map[string]schemas.Money{},
		refunds: map[string]schemas.Money{}, declines: map[string]bool{}}
}

// Apply folds one event in. It returns the order the event changed, if any.
func (m *ReadModel) Apply(topic, id string, payload []byte) (*OrderRow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id != "" && m.seen[topic+"/"+id] {
		return nil, nil
	}
	var changed *OrderRow
	var err error
	switch topic {
	case schemas.TopicCustomerRegistered:
		var e schemas.CustomerRegistered
		if err = json.Unmarshal(payload, &e); err == nil {
			if _, ok := m.customers[e.CustomerID]; !ok {
				m.stats.Customers++
			}
			m.customers[e.CustomerID] = e
		}
	case schemas.TopicOrderPlaced:
		var e schemas.OrderPlaced
		if err = json.Unmarshal(payload, &e); err == nil {
			row := m.orders[e.OrderID]
			if row == nil {
				row = &OrderRow{ID: e.OrderID, Status: "pending"}
				m.orders[e.OrderID] = row
			}
			if !m.placed[e.OrderID] {
				m.placed[e.OrderID] = true
				m.stats.Orders++
			}
			row.CustomerID, row.Total, row.Currency, row.Items, row.PlacedAt = e.CustomerID, e.Total, e.Currency, e.Items, e.PlacedAt
			if row.UpdatedAt.IsZero() {
				row.UpdatedAt = e.PlacedAt
			}
			changed = row
		}
	case schemas.TopicOrderConfirmed:
		var e schemas.OrderConfirmed
		if err = json.Unmarshal(payload, &e); err == nil {
			changed = m.settle(e.OrderID, "confirmed", "", e.ConfirmedAt)
		}
	case schemas.TopicOrderRejected:
		var e schemas.OrderRejected
		if err = json.Unmarshal(payload, &e); err == nil {
			changed = m.settle(e.OrderID, "rejected", e.Reason, e.RejectedAt)
		}
	case schemas.TopicStockChanged:
		var e schemas.StockChanged
		if err = json.Unmarshal(payload, &e); err == nil && e.Version > m.stock.Version {
			levels := make(map[string]int, len(e.Levels))
			for _, l := range e.Levels {
				levels[l.SKU] = l.Stock
			}
			m.stock = StockView{Version: e.Version, Levels: levels, At: e.Time}
		}
	case schemas.TopicPaymentSucceeded:
		var e schemas.PaymentSucceeded
		if err = json.Unmarshal(payload, &e); err == nil {
			if _, ok := m.charges[e.PaymentID]; !ok {
				m.charges[e.PaymentID] = e.Amount
				m.stats.PaymentsSucceeded++
				m.stats.Charged += e.Amount
			}
		}
	case schemas.TopicPaymentDeclined:
		var e schemas.PaymentDeclined
		if err = json.Unmarshal(payload, &e); err == nil && !m.declines[e.OrderID] {
			m.declines[e.OrderID] = true
			m.stats.PaymentsFailed++
		}
	case schemas.TopicPaymentRefunded:
		var e schemas.PaymentRefunded
		if err = json.Unmarshal(payload, &e); err == nil {
			if _, ok := m.refunds[e.PaymentID]; !ok {
				m.refunds[e.PaymentID] = e.Amount
				m.stats.Refunds++
				m.stats.Refunded += e.Amount
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if id != "" {
		m.seen[topic+"/"+id] = true
	}
	m.stats.Revenue = m.stats.Charged - m.stats.Refunded
	if changed != nil {
		c := *changed
		return &c, nil
	}
	return nil, nil
}

func (m *ReadModel) settle(id, status, reason string, at time.Time) *OrderRow {
	row := m.orders[id]
	if row == nil {
		row = &OrderRow{ID: id}
		m.orders[id] = row
	}
	// An order's outcome is counted once, from its events: the row's
	// status may be the gateway's own.
	if prev := m.outcome[id]; prev != status {
		m.count(prev, -1)
		m.count(status, 1)
		m.outcome[id] = status
	}
	row.Status, row.Reason, row.UpdatedAt = status, reason, at
	return row
}

func (m *ReadModel) count(status string, d int) {
	switch status {
	case "confirmed":
		m.stats.OrdersConfirmed += d
	case "rejected":
		m.stats.OrdersRejected += d
	}
}

// Pending records an order the gateway has just placed, before its event
// is projected, so that it can be read at once.
func (m *ReadModel) Pending(row OrderRow) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.orders[row.ID]; !ok {
		m.orders[row.ID] = &row
	}
}

// Customer returns a customer from the replica.
func (m *ReadModel) Customer(id string) (schemas.CustomerRegistered, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c, ok := m.customers[id]
	return c, ok
}

// Customers returns every customer, by name.
func (m *ReadModel) Customers() []schemas.CustomerRegistered {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]schemas.CustomerRegistered, 0, len(m.customers))
	for _, c := range m.customers {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b schemas.CustomerRegistered) int { return a.RegisteredAt.Compare(b.RegisteredAt) })
	return out
}

// Order returns one order.
func (m *ReadModel) Order(id string) (OrderRow, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.orders[id]
	if !ok {
		return OrderRow{}, false
	}
	return *r, true
}

// Orders returns a customer's orders (everyone's when customerID is ""),
// newest first.
func (m *ReadModel) Orders(customerID string) []OrderRow {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []OrderRow
	for _, r := range m.orders {
		if customerID == "" || r.CustomerID == customerID {
			out = append(out, *r)
		}
	}
	slices.SortFunc(out, func(a, b OrderRow) int {
		if c := b.PlacedAt.Compare(a.PlacedAt); c != 0 {
			return c
		}
		return compareStrings(b.ID, a.ID)
	})
	return out
}

// OrderKey is an order's place in the newest-first listing of Orders:
// by placed time, then by id.
type OrderKey struct {
	PlacedAt time.Time
	ID       string
}

// after says whether row comes after k in the listing.
func (k OrderKey) after(row OrderRow) bool {
	if c := k.PlacedAt.Compare(row.PlacedAt); c != 0 {
		return c > 0
	}
	return row.ID < k.ID
}

// OrdersPage returns at most limit of Orders(customerID), those after the
// key (from the newest when after is nil), and whether more follow.
func (m *ReadModel) OrdersPage(customerID string, after *OrderKey, limit int) ([]OrderRow, bool) {
	all := m.Orders(customerID)
	start := 0
	if after != nil {
		start, _ = slices.BinarySearchFunc(all, *after, func(row OrderRow, k OrderKey) int {
			if k.after(row) {
				return 1
			}
			return -1
		})
	}
	rest := all[start:]
	if len(rest) > limit {
		return rest[:limit], true
	}
	return rest, false
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Stock returns the newest stock the inventory announced.
func (m *ReadModel) Stock() StockView {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.stock // Levels is replaced, never changed
}

// Stats returns the counters.
func (m *ReadModel) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.stats
}
