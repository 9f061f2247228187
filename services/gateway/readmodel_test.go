package gateway_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/gateway"
)

type event struct {
	topic, id string
	payload   []byte
}

func ev(t *testing.T, topic, id string, v any) event {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return event{topic, id, b}
}

// history is what the services publish for n orders: every third is
// declined, every fifth is refunded after its charge, the rest confirmed.
func history(t *testing.T, n int) []event {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var out []event
	for i := range n {
		id := fmt.Sprintf("ord-%03d", i)
		out = append(out, ev(t, schemas.TopicOrderPlaced, "placed-"+id, schemas.OrderPlaced{OrderID: id, CustomerID: "cus-1",
			Items: []schemas.Item{{SKU: "sku-mug", Qty: 1, UnitPrice: 100}}, Total: 100, Currency: schemas.Currency, PlacedAt: now}))
		switch {
		case i%3 == 0:
			out = append(out, ev(t, schemas.TopicPaymentDeclined, "declined-"+id, schemas.PaymentDeclined{OrderID: id, Reason: "card declined", Amount: 100, Time: now}),
				ev(t, schemas.TopicOrderRejected, "rejected-"+id, schemas.OrderRejected{OrderID: id, CustomerID: "cus-1", Reason: "card declined", RejectedAt: now}))
		case i%5 == 0:
			out = append(out, ev(t, schemas.TopicPaymentSucceeded, "pay-"+id, schemas.PaymentSucceeded{PaymentID: "pay-" + id, OrderID: id, Time: now, Amount: 100, Currency: schemas.Currency}),
				ev(t, schemas.TopicPaymentRefunded, "refund-pay-"+id, schemas.PaymentRefunded{PaymentID: "pay-" + id, OrderID: id, Amount: 100, Currency: schemas.Currency, Time: now}),
				ev(t, schemas.TopicOrderRejected, "rejected-"+id, schemas.OrderRejected{OrderID: id, CustomerID: "cus-1", Reason: "out of stock", RejectedAt: now}))
		default:
			out = append(out, ev(t, schemas.TopicPaymentSucceeded, "pay-"+id, schemas.PaymentSucceeded{PaymentID: "pay-" + id, OrderID: id, Time: now, Amount: 100, Currency: schemas.Currency}),
				ev(t, schemas.TopicOrderConfirmed, "confirmed-"+id, schemas.OrderConfirmed{OrderID: id, CustomerID: "cus-1", Total: 100, Currency: schemas.Currency, ConfirmedAt: now}))
		}
	}
	return out
}

// The counters are a function of the events alone: whatever order they
// arrive in, however often, and whatever the gateway wrote locally
// (Pending, for an order it has just placed) before they arrived.
func TestCountersArePureFunctionOfTheEvents(t *testing.T) {
	const n = 30
	evs := history(t, n)
	want := gateway.NewReadModel()
	for _, e := range evs {
		if _, err := want.Apply(e.topic, e.id, e.payload); err != nil {
			t.Fatal(err)
		}
	}
	ws := want.Stats()
	if ws.Orders != n || ws.OrdersConfirmed+ws.OrdersRejected != n || ws.PaymentsFailed != 10 || ws.Refunds != 4 {
		t.Fatalf("in order: %+v", ws)
	}
	for _, tc := range []struct {
		name    string
		pending bool // the gateway records each order as pending first
		shuffle bool
		twice   bool // every event is delivered again (a redelivery, a replay)
		newIDs  bool // the redelivery has another event id (published again after the duplicate window)
	}{
		{name: "pending before the events", pending: true},
		{name: "shuffled", shuffle: true},
		{name: "pending, shuffled, twice", pending: true, shuffle: true, twice: true},
		{name: "published again with new ids", shuffle: true, twice: true, newIDs: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rm := gateway.NewReadModel()
			if tc.pending {
				for i := range n {
					rm.Pending(gateway.OrderRow{ID: fmt.Sprintf("ord-%03d", i), CustomerID: "cus-1", Status: "pending", Total: 100, PlacedAt: time.Now().UTC()})
				}
			}
			all := append([]event(nil), evs...)
			if tc.twice {
				again := append([]event(nil), evs...)
				if tc.newIDs {
					for i := range again {
						again[i].id += "-again"
					}
				}
				all = append(all, again...)
			}
			if tc.shuffle {
				r := rand.New(rand.NewPCG(1, 2))
				r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
			}
			for _, e := range all {
				if _, err := rm.Apply(e.topic, e.id, e.payload); err != nil {
					t.Fatal(err)
				}
			}
			if got := rm.Stats(); got != ws {
				t.Errorf("stats\n got  %+v\n want %+v", got, ws)
			}
		})
	}
}
