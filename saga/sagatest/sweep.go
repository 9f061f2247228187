package sagatest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
)

// Sweep describes a failure sweep: the flow, an input to start it with, and
// how to bind its real handlers.
type Sweep[In any] struct {
	Flow  *saga.Flow[In]
	Input In
	// Bind binds the flow's handlers in r, as the services do.
	Bind func(r *saga.Runner) error
	// Client to run on; nil starts an embedded server for the sweep.
	Client *saga.Client
	// Timeout for each saga to end (default 30s).
	Timeout time.Duration
}

// RunSweep runs the flow once for every step that can fail (all but the
// Retriable ones), with that step's action aborting, and checks that each
// run ends compensated with exactly the completed steps compensated, each
// once, in reverse order of completion (parallel members in any order
// among themselves), and that the failed step and those after it were never
// compensated. One subtest per step.
//
// A step bound with a nil compensation (nothing to undo) counts as
// compensated when its compensation is recorded, though no handler runs.
func RunSweep[In any](t *testing.T, s Sweep[In]) {
	t.Helper()
	if s.Timeout == 0 {
		s.Timeout = 30 * time.Second
	}
	c := s.Client
	if c == nil {
		c = NewServer(t).Client()
	}
	positions := map[string]int{}
	for _, st := range s.Flow.Steps() {
		positions[st.Name] = st.Position
	}
	var mu sync.Mutex
	abortAt := map[string]string{} // saga id -> step that aborts
	rec := NewRecorder()
	r, err := saga.NewRunner(c,
		saga.WithInterceptor(func(ctx context.Context, info saga.Info, next func(context.Context) error) error {
			mu.Lock()
			target := abortAt[info.ID]
			mu.Unlock()
			if info.Phase == saga.PhaseAction && info.Step == target {
				return saga.Abortf("sweep: %s aborts", target)
			}
			return next(ctx)
		}),
		saga.WithInterceptor(rec.Interceptor()))
	if err != nil {
		t.Fatalf("sagatest: sweep runner: %v", err)
	}
	if err := s.Bind(r); err != nil {
		t.Fatalf("sagatest: sweep bind: %v", err)
	}
	Run(t, r)
	run := time.Now().UnixNano()
	for _, info := range s.Flow.Steps() {
		step := info.Name
		if info.Kind == saga.RetriableStep {
			continue // retried until it succeeds: it cannot abort
		}
		t.Run("abort "+step, func(t *testing.T) {
			id := fmt.Sprintf("sweep-%s-%d", step, run)
			mu.Lock()
			abortAt[id] = step
			mu.Unlock()
			if err := saga.Start(context.Background(), c, s.Flow, id, s.Input); err != nil {
				t.Fatalf("start: %v", err)
			}
			st := AwaitStatus(t, c, s.Flow, id, s.Timeout, saga.StatusCompensated, saga.StatusCompleted, saga.StatusCompensationFailed)
			if st.Status != saga.StatusCompensated {
				t.Fatalf("saga ended %s, want compensated (reason %q)", st.Status, st.Reason)
			}
			checkSweepRun(t, c, s.Flow, rec, st, step, positions)
		})
	}
}

func checkSweepRun(t *testing.T, c *saga.Client, f saga.FlowRef, rec *Recorder, st *saga.State, failed string, positions map[string]int) {
	t.Helper()
	// The saga's own log says which steps completed and were compensated:
	// the recorder sees no call for a step bound with a nil compensation.
	var completed, logged []string
	for _, e := range Timeline(t, c, f, st.ID) {
		if step, ok := cut(e, ":done"); ok {
			completed = append(completed, step)
		}
		if step, ok := cut(e, ":compensated"); ok {
			logged = append(logged, step)
		}
	}
	for _, ss := range st.Steps {
		switch {
		case ss.Name == failed:
			if ss.Status != saga.StepFailed {
				t.Errorf("step %s is %s, want failed", ss.Name, ss.Status)
			}
		case slices.Contains(completed, ss.Name):
			if ss.Status != saga.StepCompensated {
				t.Errorf("step %s completed but is %s, want compensated", ss.Name, ss.Status)
			}
		case ss.Position < positions[failed]:
			t.Errorf("step %s before the failed step never completed (%s)", ss.Name, ss.Status)
		case ss.Status != saga.StepPending && ss.Status != saga.StepSkipped:
			t.Errorf("step %s never ran but is %s", ss.Name, ss.Status)
		}
	}
	// Each completed step compensated exactly once, in reverse order; no
	// compensation handler ran twice or for a step that did not complete.
	if len(logged) != len(completed) {
		t.Errorf("compensations %q, want one for each completed step %q", logged, completed)
	}
	for _, name := range completed {
		if n := count(logged, name); n != 1 {
			t.Errorf("step %s compensated %d times, want once", name, n)
		}
	}
	for _, call := range rec.Calls(st.ID) {
		if step, ok := cut(call, ":compensation"); ok && (!slices.Contains(completed, step) || count(rec.Calls(st.ID), call) != 1) {
			t.Errorf("compensation handler of %s ran %d times (completed steps %q)", step, count(rec.Calls(st.ID), call), completed)
		}
	}
	for i := 1; i < len(logged); i++ {
		if positions[logged[i]] > positions[logged[i-1]] {
			t.Errorf("logged compensations out of reverse order: %q", logged)
		}
	}
}

func cut(s, suffix string) (string, bool) {
	if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return "", false
}

func count(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}
