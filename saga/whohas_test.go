package saga_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// Get tells, for a running step, whether a runner has it (Taken), whether
// no runner serves it (Unserved), or whether it is queued behind earlier
// work at runners that do.
func TestGetTellsWhoHasAStep(t *testing.T) {
	type In struct{ N int }
	slow := saga.NewStep[In, In]("slow", saga.Owner("a"))
	after := saga.NewStep[In, In]("after", saga.Owner("b"))
	flow := saga.MustDefine[In]("whohas", 1, slow, after)
	srv := sagatest.NewServer(t)
	c := srv.Client()
	release := make(chan struct{})
	r, err := saga.NewRunner(srv.Client(), saga.WithConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, slow, func(ctx context.Context, in In) (In, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return in, nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	ctx := context.Background()
	step := func(id, name string) saga.StepState {
		st, err := c.Get(ctx, flow, id)
		if err != nil {
			t.Fatal(err)
		}
		return *st.Step(name)
	}
	if err := saga.Start(ctx, c, flow, "first", In{1}); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 20*time.Second, func() bool { return step("first", "slow").Taken },
		func() string { return "first's slow step is never taken" })
	if err := saga.Start(ctx, c, flow, "second", In{2}); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 20*time.Second, func() bool { return step("second", "slow").Status == saga.StepRunning },
		func() string { return "second's slow step does not run" })
	// The one runner holds first: second is queued, neither taken nor
	// unserved.
	s := step("second", "slow")
	if s.Taken || s.Unserved || !strings.Contains(s.Waiting, "queued") {
		t.Errorf("second's slow step: taken %v unserved %v waiting %q", s.Taken, s.Unserved, s.Waiting)
	}
	if f := step("first", "slow"); !f.Taken || f.Waiting != "" {
		t.Errorf("first's slow step: taken %v waiting %q", f.Taken, f.Waiting)
	}
	close(release)
	// Nobody runs after: both wait there, unserved.
	for _, id := range []string{"first", "second"} {
		sagatest.Poll(t, 20*time.Second, func() bool { return step(id, "after").Status == saga.StepRunning },
			func() string { return id + " does not reach after" })
		if a := step(id, "after"); !a.Unserved || a.Taken || !strings.Contains(a.Waiting, "waiting for a runner of whohas v1") {
			t.Errorf("%s's after step: taken %v unserved %v waiting %q", id, a.Taken, a.Unserved, a.Waiting)
		}
	}
}
