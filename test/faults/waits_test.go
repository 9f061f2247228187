package faults_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
)

// confirmTimeout is how long a big order's charge waits for its customer
// in TestKilledWhileStepsWait (CHOREO_CONFIRM_TIMEOUT of every process).
const confirmTimeout = 4 * time.Second

// confirmations is what the load driver did with the big orders' waits:
// per order, "confirmed" (payment answered so), "late" (payment answered
// that the wait was over) or "left" (never confirmed, on purpose).
type confirmations struct {
	mu      sync.Mutex
	wg      sync.WaitGroup
	outcome map[string]string
	asked   int // confirmation requests sent, retries included
}

func (c *confirmations) set(id, outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outcome[id] = outcome
}

func (c *confirmations) count() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, o := range c.outcome {
		out[o]++
	}
	return out
}

// confirm confirms order id as the gateway does when its customer clicks
// "confirm payment" (the NATS request shop.payment.confirm), after delay,
// and asks again while payment cannot answer (an instance killed, the
// wait not begun yet) until the wait is surely over.
func (h *harness) confirm(c *confirmations, id string, delay time.Duration) {
	defer c.wg.Done()
	placed := time.Now()
	giveUp := placed.Add(delay + confirmTimeout + 2*time.Second)
	for at := placed.Add(delay); time.Now().Before(giveUp) && h.t.Context().Err() == nil; at = time.Now().Add(200 * time.Millisecond) {
		if d := time.Until(at); d > 0 {
			time.Sleep(d) // the customer's delay, then the driver's pace between tries
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := kit.Call[payment.ConfirmRequest, payment.Confirmation](ctx, h.nc, payment.ConfirmSubject, payment.ConfirmRequest{OrderID: id, CustomerID: h.fr})
		cancel()
		c.mu.Lock()
		c.asked++
		c.mu.Unlock()
		switch {
		case err == nil && res.Status == "confirmed":
			c.set(id, "confirmed")
			return
		case err != nil && (strings.Contains(err.Error(), "too late") || strings.Contains(err.Error(), "cancelled")):
			c.set(id, "late")
			return
		}
		// Not waiting yet, payment down or busy: again.
	}
	c.set(id, "gave up")
}

// Scenario 18: processes are killed (kill -9, seeded) while steps wait
// for a completion and for an event. Most orders are big (above
// CHOREO_CONFIRM_ABOVE, here 10 EUR): their charge waits for the
// customer's confirmation, which the load driver gives for three in four
// of them after a random delay, through the request the gateway makes;
// the rest are left to time out (CHOREO_CONFIRM_TIMEOUT=4s). After the
// pivot every order's deliver step waits for the carrier's
// ParcelDelivered. Meanwhile payment, shipping, carrier and order
// instances are killed and started again. Nothing may be lost or doubled
// (no double charge, no charge left on a compensated order, no parcel
// delivered twice or on a compensated order), every wait ends by a
// completion or its timeout, an order confirmed is completed and
// delivered, one left unconfirmed is compensated.
func TestKilledWhileStepsWait(t *testing.T) {
	h := newHarness(t, setup{
		instances: map[string]int{"order": 2, "payment": 2, "shipping": 2, "carrier": 2},
		env: func(h *harness, svc string, n int) []string {
			return []string{schemas.ConfirmTimeoutEnv + "=" + confirmTimeout.String(), payment.ConfirmAboveEnv + "=10"}
		},
	})
	c := &confirmations{outcome: map[string]string{}}
	n := scale(200)
	big := make([]bool, n)
	confirms := make([]bool, n)
	delays := make([]time.Duration, n)
	for i := range n {
		big[i] = h.intn(100) < 70
		confirms[i] = h.intn(100) < 75
		delays[i] = time.Duration(300+h.intn(2500)) * time.Millisecond
	}
	l := h.startLoadOf(n, 20, func(l *load, i int) bool {
		items := []order.Line{{SKU: "sku-sticker", Qty: 1}} // 4 EUR: charged at once
		if big[i] {
			items = []order.Line{{SKU: "sku-mug", Qty: 1}} // 12.50 EUR: waits for its customer
		}
		id, ok := h.placeOrder(l, h.fr, "4242424242424242", items)
		if ok && big[i] {
			if !confirms[i] {
				c.set(id, "left")
			} else {
				c.wg.Add(1)
				go h.confirm(c, id, delays[i])
			}
		}
		return ok
	})
	stop := make(chan struct{})
	killable := []string{"payment", "shipping", "carrier", "order"}
	wg := h.every(400*time.Millisecond, stop, func() {
		svc := killable[h.intn(len(killable))]
		ins := h.insts[svc]
		in := ins[h.intn(len(ins))]
		in.hold()
		h.faults.Add(1)
		go func() {
			time.Sleep(time.Duration(200+h.intn(800)) * time.Millisecond) // how long it stays dead
			in.start()
		}()
	})
	waitLoad(l)
	c.wg.Wait() // every confirmation was given, refused, or given up
	close(stop)
	wg.Wait()
	for _, ins := range h.insts {
		for _, in := range ins {
			if in.proc().exited() {
				in.start()
			}
		}
	}
	rep := h.settle(l, 2*time.Minute)

	ctx := context.Background()
	counts := c.count()
	ended := map[string]int{}
	for id, outcome := range c.outcome {
		st, err := h.d.Sagas.Get(ctx, schemas.OrderFlow, id)
		if err != nil {
			continue // the checker counted it lost
		}
		ended[outcome+" "+string(st.Status)]++
		switch {
		case outcome == "confirmed" && st.Status != saga.StatusCompleted:
			t.Errorf("order %s: its confirmation was answered, and its saga is %s (%s)", id, st.Status, st.Reason)
		case outcome == "left" && st.Status != saga.StatusCompensated:
			t.Errorf("order %s: never confirmed, and its saga is %s", id, st.Status)
		case outcome == "left" && !strings.Contains(st.Step("charge").Error, "no answer from customer"):
			t.Errorf("order %s: never confirmed, and its charge is %s (%q)", id, st.Step("charge").Status, st.Step("charge").Error)
		}
	}
	t.Logf("big orders: %d confirmed, %d confirmed too late, %d left unconfirmed, %d given up (%d confirmation requests); by saga end: %v",
		counts["confirmed"], counts["late"], counts["left"], counts["gave up"], c.asked, ended)
	if rep.Confirmed == 0 || rep.TimedOut == 0 || rep.Delivered == 0 {
		t.Errorf("waits confirmed=%d timed_out=%d delivered=%d: each kind of wait must end at least once", rep.Confirmed, rep.TimedOut, rep.Delivered)
	}
	if h.faults.Load() < 10 {
		t.Errorf("only %d kills: the scenario proves little", h.faults.Load())
	}
	if s := fmt.Sprint(counts); counts["confirmed"] == 0 || counts["left"] == 0 {
		t.Errorf("the driver confirmed or left too few orders: %s", s)
	}
}
