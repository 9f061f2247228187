package engine

import (
	"context"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

// A step's timer whose fire the broker lost is armed again by its owner
// once overdue: the wait times out as the flow says (here the step is
// tried again, and waits on its next attempt). The runner's clock
// runs an hour ahead of the broker's, so the schedule the step set does
// not fire while the test runs: as if its fire had been lost.
func TestOverdueStepTimerIsArmedAgain(t *testing.T) {
	c0, _ := readClient(t)
	var ahead atomic.Int64
	ahead.Store(int64(time.Hour))
	clock := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	js := c0.j.js
	ctx := context.Background()
	c, err := New(ctx, js, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	in := reflect.TypeFor[readIn]()
	wait := NewStep("wait", in, in, WaitsFor("bank", time.Minute))
	f, err := Define("sweepflow", 1, in, wait)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Bind(wait, func(context.Context, []byte) ([]byte, error) { return nil, ErrLater },
		func(context.Context, []byte, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = r.Run(rctx) }()
	<-r.Ready()
	if err := c.Start(ctx, f, "s1", []byte(`{"N":1}`)); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, func() bool {
		st, err := c.Get(ctx, f, "s1")
		return err == nil && st.Step("wait").Status == StepWaiting
	})
	if n := c.j.sweepWaits(ctx); n != 0 {
		t.Fatalf("swept %d waits before they were due", n)
	}
	ahead.Add(int64(time.Minute + sweepGrace + time.Second)) // the wait is overdue by the saga's clock
	if n := c.j.sweepWaits(ctx); n != 1 {
		t.Fatalf("swept %d overdue waits, want 1", n)
	}
	poll(t, 30*time.Second, func() bool {
		st, err := c.Get(ctx, f, "s1")
		// Its timer fired: the wait timed out, and the step was tried
		// again (it waits anew, on its next attempt).
		return err == nil && (st.Step("wait").Status != StepWaiting || st.Step("wait").Attempts > 1)
	})
	if n := c.j.sweepWaits(ctx); n != 0 {
		t.Fatalf("swept %d waits after the timer fired", n)
	}
}

func poll(t *testing.T, bound time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("not in time")
		}
		time.Sleep(20 * time.Millisecond) // a poll with a deadline
	}
}
