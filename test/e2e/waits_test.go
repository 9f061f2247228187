package e2e_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/carrier"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// big is an order above the confirmation threshold (100 EUR): 3 hoodies,
// 147 EUR.
var big = shoptest.Item("sku-hoodie", 3)

// chargeOf is the ledger's entry of order id, zero if none.
func chargeOf(t *testing.T, h *shopHarness, id string) payment.Charge {
	t.Helper()
	ledger, err := payment.Ledger(context.Background(), h.deps)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ledger {
		if c.OrderID == id {
			return c
		}
	}
	return payment.Charge{}
}

// TestBigOrderIsChargedOnceItsCustomerConfirms: a big order's charge waits
// on the customer, with when its wait ends; another customer's
// confirmation and the operator's are refused and change nothing; the
// customer's charges the card once, and the order goes on to the
// carrier's delivery.
func TestBigOrderIsChargedOnceItsCustomerConfirms(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	bob := h.register("bob", "FR")
	id := h.order(ada, okCard, big)
	o := shoptest.AwaitWaiting(t, h.base, ada, id, "charge", "customer")
	until, err := time.Parse(time.RFC3339Nano, shoptest.Step(o, "charge")["wait_until"].(string))
	if err != nil || time.Until(until) <= 0 || time.Until(until) > 4*time.Second {
		t.Fatalf("charge waits until %v (%v), want within the test's %s", until, err, confirmTimeout)
	}
	if c := chargeOf(t, h, id); c.Status != "" {
		t.Fatalf("charged before the customer confirmed: %+v", c)
	}
	if code, res := shoptest.ConfirmPayment(t, h.base, bob, id); code != 403 {
		t.Fatalf("another customer's confirmation: %d %v, want 403", code, res)
	}
	if code, res := h.do("POST", "/api/orders/"+id+"/confirm-payment", map[string]any{}, h.asOperator()...); code != 403 {
		t.Fatalf("the operator's confirmation: %d %v, want 403", code, res)
	}
	if s := shoptest.Step(h.await(id, "pending", 5*time.Second), "charge"); s["status"] != "waiting" {
		t.Fatalf("after refused confirmations the charge is %v", s)
	}
	if code, res := shoptest.ConfirmPayment(t, h.base, ada, id); code != 200 || res["status"] != "confirmed" {
		t.Fatalf("the customer's confirmation: %d %v", code, res)
	}
	o = h.await(id, "confirmed", 30*time.Second)
	for _, name := range []string{"charge", "reserve", "book", "confirm", "bill", "deliver"} {
		if s := shoptest.Step(o, name); s == nil || s["status"] != "completed" {
			t.Errorf("step %s: %v", name, s)
		}
	}
	if c := chargeOf(t, h, id); c.Status != "charged" || c.Charges != 1 || c.Amount != 3*4900 {
		t.Errorf("ledger: %+v, want one charge of 147 EUR", c)
	}
	// Confirming again answers the same and charges nothing more.
	if code, res := shoptest.ConfirmPayment(t, h.base, ada, id); code != 200 && code != 409 {
		t.Errorf("a second confirmation: %d %v", code, res)
	}
	if c := chargeOf(t, h, id); c.Charges != 1 {
		t.Errorf("ledger after a second confirmation: %+v", c)
	}
}

// TestUnconfirmedBigOrderIsCompensated: with no confirmation within the
// wait (3s here), the charge is compensated, the order rejected, nothing
// charged; a confirmation after that is refused.
func TestUnconfirmedBigOrderIsCompensated(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	id := h.order(ada, okCard, big)
	shoptest.AwaitWaiting(t, h.base, ada, id, "charge", "customer")
	o := h.await(id, "rejected", 60*time.Second)
	if s := shoptest.Step(o, "charge"); s["status"] != "compensated" || !strings.Contains(s["error"].(string), "customer") {
		t.Errorf("charge: %v", s)
	}
	if c := chargeOf(t, h, id); c.Status == "charged" || c.Status == "refunded" || c.Charges != 0 {
		t.Errorf("ledger: %+v, want nothing charged", c)
	}
	if code, res := shoptest.ConfirmPayment(t, h.base, ada, id); code != 409 {
		t.Errorf("a late confirmation: %d %v, want 409", code, res)
	}
	if c := chargeOf(t, h, id); c.Charges != 0 {
		t.Errorf("ledger after a late confirmation: %+v", c)
	}
}

// TestSmallOrderIsChargedAtOnce: up to the threshold nothing waits for
// the customer, and a confirmation is refused (409).
func TestSmallOrderIsChargedAtOnce(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	id := h.order(ada, okCard, shoptest.Item("sku-mug", 1))
	o := h.await(id, "confirmed", 30*time.Second)
	if s := shoptest.Step(o, "charge"); s["status"] != "completed" || s["attempts"].(float64) != 1 {
		t.Errorf("charge: %v", s)
	}
	if code, res := shoptest.ConfirmPayment(t, h.base, ada, id); code != 409 {
		t.Errorf("confirming a small order: %d %v, want 409", code, res)
	}
}

// TestDeliveryCompletesThroughTheCarrier: after the pivot, deliver waits
// on the carrier, which answers ParcelDelivered; the step's result is the
// carrier's event.
func TestDeliveryCompletesThroughTheCarrier(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	id := h.order(ada, okCard, shoptest.Item("sku-tee", 1))
	o := h.await(id, "confirmed", 30*time.Second)
	if s := shoptest.Step(o, "deliver"); s["status"] != "completed" || s["service"] != "shipping" {
		t.Errorf("deliver: %v", s)
	}
	evs, err := h.deps.Sagas.Timeline(context.Background(), schemas.OrderFlowV4, id)
	if err != nil {
		t.Fatal(err)
	}
	var waited, done bool
	for _, e := range evs {
		if e.Step != "deliver" {
			continue
		}
		switch e.Phase {
		case "waiting":
			waited = true
		case "done":
			var got schemas.ParcelDelivered
			if err := json.Unmarshal(e.Data, &got); err != nil || got.OrderID != id || got.Carrier != carrier.Name {
				t.Errorf("deliver's result: %s (%v)", e.Data, err)
			}
			done = true
		}
	}
	if !waited || !done {
		t.Errorf("deliver in the timeline: waited %v, done %v", waited, done)
	}
}
