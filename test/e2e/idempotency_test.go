package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/gateway"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// awaitOrderService waits until an order service answers (a request it
// refuses, placing nothing).
func awaitOrderService(t *testing.T, h *shopHarness) {
	t.Helper()
	var err error
	sagatest.Poll(t, 20*time.Second, func() bool {
		_, err = kit.Call[order.PlaceRequest, order.PlaceResult](context.Background(), h.deps.NC, order.PlaceSubject, order.PlaceRequest{})
		var bad kit.BadRequest
		return errors.As(err, &bad)
	}, func() string { return fmt.Sprint("the order service does not answer: ", err) })
}

// oneCharge checks the shop holds exactly the orders ids, each charged
// once, once their sagas ended.
func oneCharge(t *testing.T, h *shopHarness, ids ...string) {
	t.Helper()
	ctx := context.Background()
	orders, err := order.Orders(ctx, h.deps)
	if err != nil || len(orders) != len(ids) {
		t.Fatalf("orders %+v %v, want %d", orders, err, len(ids))
	}
	var ledger []payment.Charge
	sagatest.Poll(t, 20*time.Second, func() bool {
		ledger, _ = payment.Ledger(ctx, h.deps)
		return len(ledger) == len(ids)
	}, func() string { return fmt.Sprintf("ledger %+v, want %d charges", ledger, len(ids)) })
	for _, c := range ledger {
		if c.Charges != 1 {
			t.Errorf("charge %+v, want charged once", c)
		}
	}
}

// An Idempotency-Key names the order: the same request sent again gets
// the same order back (marked Idempotent-Replayed), never a second order;
// the key reused for other items is 422, a malformed key 400.
func TestIdempotencyKeyPlacesAnOrderOnce(t *testing.T) {
	h := newShop(t)
	ada, bob := h.register("ada", "FR"), h.register("bob", "FR")
	body := map[string]any{"customer_id": ada.ID, "items": []any{shoptest.Item("sku-mug", 2)}, "card": okCard}
	key := map[string]string{"Idempotency-Key": "checkout-7f3a", "Authorization": "Bearer " + ada.Token}

	code, first, hdr := h.doWith("POST", "/api/orders", body, key)
	id, _ := first["id"].(string)
	if code != 202 || id == "" || hdr.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %v %v", code, first, hdr)
	}
	h.await(id, "confirmed", 60*time.Second)
	code, again, hdr := h.doWith("POST", "/api/orders", body, key)
	if code != 202 || again["id"] != id || again["status"] != "confirmed" || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat: %d %v %v, want order %s, confirmed, replayed", code, again, hdr, id)
	}

	other := map[string]any{"customer_id": ada.ID, "items": []any{shoptest.Item("sku-tee", 1)}, "card": okCard}
	if code, res, _ := h.doWith("POST", "/api/orders", other, key); code != 422 || !strings.Contains(res["error"].(string), "other items") {
		t.Errorf("the key reused for other items: %d %v, want 422", code, res)
	}
	// Another customer's key is another order, even when it is the same.
	theirs := map[string]any{"customer_id": bob.ID, "items": []any{shoptest.Item("sku-mug", 2)}, "card": okCard}
	code, res, _ := h.doWith("POST", "/api/orders", theirs, map[string]string{"Idempotency-Key": "checkout-7f3a", "Authorization": "Bearer " + bob.Token})
	if code != 202 || res["id"] == id {
		t.Fatalf("bob with ada's key: %d %v, want an order of his own", code, res)
	}
	h.await(res["id"].(string), "confirmed", 60*time.Second)
	for _, bad := range []string{strings.Repeat("k", order.MaxKeyLen+1), "two words", "caf\u00e9"} {
		if code, res, _ := h.doWith("POST", "/api/orders", body, map[string]string{"Idempotency-Key": bad, "Authorization": "Bearer " + ada.Token}); code != 400 || !strings.Contains(res["error"].(string), "Idempotency-Key") {
			t.Errorf("key %q: %d %v, want 400", bad, code, res)
		}
	}
	oneCharge(t, h, id, res["id"].(string))
}

// The order service places the order, but its reply is lost (here: it
// comes after the gateway stopped waiting; on a cluster, the reply of a
// service whose connection moved to another server can be refused). The
// gateway asks again with the request's key, and the repeat finishes the
// first request's work: the customer gets the order, placed once.
func TestALostReplyIsAskedAgainNotPlacedTwice(t *testing.T) {
	h := newShop(t, "order", "gateway")
	h.gwOpts = []gateway.Option{gateway.WithTimeouts(gateway.Timeouts{Place: time.Second})}
	h.start("gateway")
	ada := h.register("ada", "FR")
	answered := make(chan struct{})
	var calls atomic.Int32
	h.runOrder(order.StopAt(func(point string) bool {
		if point == "started" && calls.Add(1) == 1 {
			// The first request hangs on, past the gateway's wait, until
			// the customer has had an answer.
			select {
			case <-answered:
			case <-time.After(30 * time.Second):
			}
		}
		return false
	}))
	awaitOrderService(t, h)
	code, res := h.do("POST", "/api/orders", map[string]any{"customer_id": ada.ID, "items": []any{shoptest.Item("sku-mug", 1)}, "card": okCard}, ada.Auth()...)
	close(answered)
	id, _ := res["id"].(string)
	if code != 202 || id == "" {
		t.Fatalf("%d %v, want 202 once the gateway asked again", code, res)
	}
	h.await(id, "confirmed", 60*time.Second)
	oneCharge(t, h, id)
	if !strings.Contains(h.logs.String(), "asking again with its idempotency key") {
		t.Error("the gateway did not log that it asked again")
	}
}

// A client whose request failed (here the order service stopped after
// recording the order) sends it again with its key: it gets that order,
// started by the repeat, not a second one.
func TestAClientTryingAgainWithItsKeyGetsTheOrderItStarted(t *testing.T) {
	h := newShop(t, "order")
	ada := h.register("ada", "FR")
	var stopped atomic.Bool
	h.runOrder(order.StopAt(func(point string) bool { return point == "recorded" && stopped.CompareAndSwap(false, true) }),
		order.Reconcile(time.Hour, time.Hour))
	awaitOrderService(t, h)
	body := map[string]any{"customer_id": ada.ID, "items": []any{shoptest.Item("sku-mug", 1)}, "card": okCard}
	key := map[string]string{"Idempotency-Key": "retry-me", "Authorization": "Bearer " + ada.Token}
	if code, res, _ := h.doWith("POST", "/api/orders", body, key); code < 500 || !stopped.Load() {
		t.Fatalf("first try: %d %v, want a 5xx from the stop", code, res)
	}
	code, res, hdr := h.doWith("POST", "/api/orders", body, key)
	id, _ := res["id"].(string)
	if code != 202 || id != order.KeyedID(ada.ID, "retry-me") || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("second try: %d %v %v", code, res, hdr)
	}
	h.await(id, "confirmed", 60*time.Second)
	oneCharge(t, h, id)
}
