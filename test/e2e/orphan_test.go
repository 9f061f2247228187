package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// runOrder runs an order service with options until the returned stop.
func (h *shopHarness) runOrder(opts ...order.Option) (stop func()) {
	h.t.Helper()
	nc, _ := h.srv.Connect()
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := kit.NewDeps(context.Background(), nc, "order", logger)
	if err != nil {
		h.t.Fatal(err)
	}
	svc := shoptest.Go(h.t, "order", order.New(d, opts...).Run) // its error fails the test
	stop = func() {
		_ = svc.Stop()
		nc.Close()
	}
	h.t.Cleanup(stop)
	return stop
}

// The order service dies between its writes (the record, the event, the
// saga's start): the order is neither lost nor left pending. The next
// order service finishes what was cut short, from the record (the outbox),
// and the order ends right, charged once.
func TestOrderCutShortBetweenItsWritesEndsRight(t *testing.T) {
	for _, point := range []string{"recorded", "announced", "started"} {
		t.Run("killed after "+point, func(t *testing.T) {
			h := newShop(t, "order")
			ada := h.register("ada", "FR")
			var crashed atomic.Bool
			stop := h.runOrder(order.StopAt(func(p string) bool { return p == point && crashed.CompareAndSwap(false, true) }),
				order.Reconcile(time.Hour, time.Hour))
			var code int
			var res map[string]any
			sagatest.Poll(t, 20*time.Second, func() bool { // once the order service answers
				code, res = h.do("POST", "/api/orders", map[string]any{"customer_id": ada.ID, "items": []any{shoptest.Item("sku-mug", 1)}, "card": okCard}, ada.Auth()...)
				return !strings.Contains(fmt.Sprint(res["error"]), "no responders")
			}, func() string { return "the order service does not answer" })
			if code == 202 || !crashed.Load() {
				t.Fatalf("the order service did not stop at %s: %d %v", point, code, res)
			}
			stop() // the process is gone
			orders, err := order.Orders(context.Background(), h.deps)
			if err != nil || len(orders) != 1 || orders[0].Status != "pending" {
				t.Fatalf("after the crash: %+v %v", orders, err)
			}
			id := orders[0].OrderID
			// The next order service drains the outbox.
			h.runOrder(order.Reconcile(200*time.Millisecond, 0))
			o := h.await(id, "confirmed", 60*time.Second)
			if o["saga"].(map[string]any)["status"] != "completed" {
				t.Errorf("order %v", o)
			}
			ledger, _ := payment.Ledger(context.Background(), h.deps)
			if len(ledger) != 1 || ledger[0].Charges != 1 {
				t.Errorf("ledger %+v, want one charge", ledger)
			}
			var diffs []string
			sagatest.Poll(t, 10*time.Second, func() bool { diffs = recordsDiff(context.Background(), h, 1); return len(diffs) == 0 },
				func() string { return strings.Join(diffs, "\n") })
		})
	}
}

// A saga whose order the order service does not know (its record is
// gone): its end is dead-lettered with the reason, once, not retried
// every second for ever.
func TestEndOfAnUnknownOrderIsDeadLettered(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	ctx := context.Background()
	card, err := kit.Call[payment.TokenizeRequest, schemas.Card](ctx, h.deps.NC, payment.TokenizeSubject, payment.TokenizeRequest{CustomerID: ada.ID, Number: declinedCard})
	if err != nil {
		t.Fatal(err)
	}
	o, err := order.Price("ord-unknown", order.PlaceRequest{CustomerID: ada.ID, Items: []order.Line{{SKU: "sku-mug", Qty: 1}}, Card: card}, time.Now().UTC())
	if err != nil {
		t.Fatal(err)
	}
	// Started behind the order service's back (as the admin may).
	if err := saga.Start(ctx, h.deps.Sagas, schemas.OrderFlowV2, o.OrderID, o); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, h.deps.Sagas, schemas.OrderFlow, o.OrderID, 30*time.Second, saga.StatusCompensated)
	var dls []ops.DeadLetter
	sagatest.Poll(t, 20*time.Second, func() bool {
		dls = dls[:0]
		all, _ := h.deps.Ops.DeadLetters(ctx, schemas.OrderFlow.Name())
		for _, d := range all {
			if strings.Contains(d.Subject, "."+o.OrderID+".") {
				dls = append(dls, d)
			}
		}
		return len(dls) > 0
	}, func() string { return "the end of the unknown order was not dead-lettered" })
	if len(dls) != 1 || !strings.Contains(dls[0].Reason, "OnEnd order: no order ord-unknown") {
		t.Errorf("dead letters %+v", dls)
	}
	// A later order goes through, and the end was not retried.
	h.await(h.order(ada, okCard, shoptest.Item("sku-mug", 1)), "confirmed", 30*time.Second)
	if n := strings.Count(h.logs.String(), "OnEnd failed, will retry"); n != 0 {
		t.Errorf("OnEnd retried %d times", n)
	}
	if orders, _ := order.Orders(ctx, h.deps); len(orders) != 1 {
		t.Errorf("the order service recorded %d orders, want 1 (not the unknown one)", len(orders))
	}
	t.Logf("dead letter: %s", dls[0].Reason)
}
