package saga_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// StepCounts counts each step's sagas by where they stand: completed,
// failed, compensated, parked, and running steps no runner serves as
// unserved, not running.
func TestStepCounts(t *testing.T) {
	e := newEnv(t, 0, func(s *shop) { s.chargeOpts = []saga.StepOption{saga.WithCompensationRetry(fastRetries(2))} })
	ctx := context.Background()
	for i := range 3 {
		e.start(t, fmt.Sprintf("ok%d", i))
	}
	e.l.on("sold", "reserve:action", func(context.Context, int) error { return saga.Abortf("sold out") })
	e.start(t, "sold")
	e.l.on("stuck", "reserve:action", func(context.Context, int) error { return saga.Abortf("sold out") })
	e.l.on("stuck", "charge:compensation", func(context.Context, int) error { return errors.New("refund refused") })
	e.start(t, "stuck")
	for i := range 3 {
		e.await(t, fmt.Sprintf("ok%d", i), saga.StatusCompleted)
	}
	e.await(t, "sold", saga.StatusCompensated)
	e.await(t, "stuck", saga.StatusCompensationFailed)

	fc, err := e.op.StepCounts(ctx, e.s.flow.Name(), 1)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]ops.StepCount{
		// charge: 3 completed, 1 refunded, 1 whose refund is parked.
		"charge":  {Step: "charge", Completed: 3, Compensated: 1, Parked: 1},
		"reserve": {Step: "reserve", Completed: 3, Failed: 2},
		"confirm": {Step: "confirm", Completed: 3},
		"notify":  {Step: "notify", Completed: 3},
	}
	for _, s := range fc.Steps {
		if w, ok := want[s.Step]; ok && s != w {
			t.Errorf("%s: %+v, want %+v", s.Step, s, w)
		}
	}
	if got := fmt.Sprint(fc.Sagas); got != "map[compensated:1 compensation_failed:1 completed:3]" {
		t.Errorf("sagas by status %s", got)
	}
	var names []string
	for _, s := range fc.Steps {
		names = append(names, s.Step)
	}
	if fmt.Sprint(names) != "[charge reserve invoice confirm notify]" {
		t.Errorf("steps in the order %v", names)
	}
	// A version nobody registered and no saga ran on is not found.
	if fc, err := e.op.StepCounts(ctx, e.s.flow.Name(), 2); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("v2: %+v %v", fc, err)
	}

	// A flow no runner serves: its first step waits.
	idle := newShop(t, 0, nil)
	if err := saga.Start(ctx, e.c, idle.flow, "w1", Order{ID: "w1"}); err != nil {
		t.Fatal(err)
	}
	var got *ops.FlowCounts
	sagatest.Poll(t, 10*time.Second, func() bool {
		got, err = e.op.StepCounts(ctx, idle.flow.Name(), 1)
		return err == nil && len(got.Steps) > 0 && got.Steps[0].Unserved == 1
	}, func() string { return fmt.Sprintf("counts %+v %v", got, err) })
	if got.Steps[0].Running != 0 || got.Sagas[saga.StatusRunning] != 1 {
		t.Errorf("idle flow: %+v", got)
	}

	for _, bad := range []struct {
		f string
		v int
	}{{"", 1}, {"a.b", 1}, {e.s.flow.Name(), 0}} {
		if _, err := e.op.StepCounts(ctx, bad.f, bad.v); !errors.Is(err, saga.ErrInvalidFlow) {
			t.Errorf("StepCounts(%v, %d): %v, want ErrInvalidFlow", bad.f, bad.v, err)
		}
	}
}
