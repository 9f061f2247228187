package e2e_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// awaitActivity waits until the order's step is running with the
// activity, and returns the step.
func (h *shopHarness) awaitActivity(id, step, activity string) map[string]any {
	h.t.Helper()
	var o map[string]any
	sagatest.Poll(h.t, 30*time.Second, func() bool {
		_, o = h.do("GET", "/api/orders/"+id, nil, h.authFor(id)...)
		return o["saga"] != nil && steps(o)[step]["status"] == "running" && steps(o)[step]["activity"] == activity
	}, func() string { return fmt.Sprintf("%s of %s is not running and %s: %v", step, id, activity, o) })
	return steps(o)[step]
}

// A step whose service has not taken it shows as waiting (with how long),
// one a service works on as working: whether the service never ran, was
// stopped after it ran, or is busy with it.
func TestWaitingIsNotWorking(t *testing.T) {
	h := newShop(t, "billing")
	ada := h.register("ada", "FR")

	// Billing never ran: the bill step (order flow v2, after the pivot)
	// waits, once the steps before it end.
	first := h.order(ada, okCard, shoptest.Item("sku-mug", 1))
	s := h.awaitActivity(first, "bill", "waiting")
	if s["service"] != "billing" {
		t.Errorf("invoice step %v", s)
	}
	sagatest.Poll(t, 10*time.Second, func() bool {
		_, o := h.do("GET", "/api/orders/"+first, nil, h.authFor(first)...)
		inv := steps(o)["bill"]
		return inv["activity"] == "waiting" && inv["waiting_ms"].(float64) >= 500
	}, func() string { return "waiting_ms does not grow" })
	h.start("billing")
	h.await(first, "confirmed", 30*time.Second)

	// Billing stopped after it ran (its consumer is there): waiting again.
	h.stop("billing")
	second := h.order(ada, okCard, shoptest.Item("sku-mug", 1))
	h.awaitActivity(second, "bill", "waiting")

	// A billing busy with the bill: working, until it ends.
	nc, _ := h.srv.Connect()
	d, err := kit.NewDeps(context.Background(), nc, "billing", nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.Runner()
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	err = saga.Handle(r, schemas.Bill, func(ctx context.Context, c schemas.OrderConfirmed) (schemas.InvoiceIssued, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return schemas.InvoiceIssued{}, ctx.Err()
		}
		return schemas.InvoiceIssued{InvoiceID: "inv-" + c.OrderID, OrderID: c.OrderID, Amount: c.Total, Currency: c.Currency, IssuedAt: time.Now().UTC()}, nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	s = h.awaitActivity(second, "bill", "working")
	if _, ok := s["waiting_ms"]; ok {
		t.Errorf("a working step has waiting_ms: %v", s)
	}
	close(release)
	h.await(second, "confirmed", 30*time.Second)
	t.Logf("bill: waiting while billing never ran, waiting once stopped, working while busy")
}
