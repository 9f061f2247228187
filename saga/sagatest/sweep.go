package sagatest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/describe"
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

// SweepRun is what one run of a sweep came to: the step whose action was
// made to abort, how the saga ended, the steps it compensated in the order
// they were, and what was wrong (nothing, when the flow's backtracking is
// right).
type SweepRun struct {
	Aborted     string
	Status      saga.Status
	Compensated []string
	Problems    []string
}

// Run runs the flow once for every step that can fail (all but the
// Retriable ones), with that step's action aborting, and checks that each
// run ends compensated with exactly the completed steps compensated, each
// once, in reverse order of completion (parallel members in any order
// among themselves), and that the failed step and those after it were
// never compensated. A step bound with a nil compensation (nothing to
// undo) counts as compensated when its compensation is recorded. It
// returns an error only when the sweep could not run.
func (s Sweep[In]) Run(ctx context.Context) ([]SweepRun, error) {
	if s.Flow == nil || s.Bind == nil {
		return nil, fmt.Errorf("sagatest: sweep needs a Flow and a Bind")
	}
	if s.Timeout == 0 {
		s.Timeout = 30 * time.Second
	}
	c := s.Client
	if c == nil {
		srv, err := StartServer()
		if err != nil {
			return nil, fmt.Errorf("sagatest: sweep server: %w", err)
		}
		defer srv.Shutdown()
		c = srv.Client()
	}
	positions := map[string]int{}
	for _, st := range s.Flow.Info().Steps {
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
		return nil, fmt.Errorf("sagatest: sweep runner: %w", err)
	}
	if err := s.Bind(r); err != nil {
		return nil, fmt.Errorf("sagatest: sweep bind: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- r.Run(rctx) }()
	defer func() { cancel(); <-errc }()
	select {
	case <-r.Ready():
	case err := <-errc:
		errc <- err
		return nil, fmt.Errorf("sagatest: sweep runner: %w", err)
	}
	run := time.Now().UnixNano()
	var out []SweepRun
	for _, info := range s.Flow.Info().Steps {
		if info.Kind == describe.Retriable {
			continue // retried until it succeeds: it cannot abort
		}
		id := fmt.Sprintf("sweep-%s-%d", info.Name, run)
		mu.Lock()
		abortAt[id] = info.Name
		mu.Unlock()
		if err := saga.Start(ctx, c, s.Flow, id, s.Input); err != nil {
			return out, fmt.Errorf("sagatest: sweep start: %w", err)
		}
		wctx, wcancel := context.WithTimeout(ctx, s.Timeout)
		st, err := Wait(wctx, c, s.Flow, id)
		wcancel()
		res := SweepRun{Aborted: info.Name}
		switch {
		case err != nil:
			res.Problems = append(res.Problems, err.Error())
		case st.Status != saga.StatusCompensated:
			res.Status = st.Status
			res.Problems = append(res.Problems, fmt.Sprintf("saga ended %s, want compensated (reason %q)", st.Status, st.Reason))
		default:
			res.Status = st.Status
			res.Compensated, res.Problems, err = checkSweepRun(ctx, c, s.Flow, rec, st, info.Name, positions)
			if err != nil {
				return out, err
			}
		}
		out = append(out, res)
	}
	return out, nil
}

// RunSweep runs the sweep (see Sweep.Run) with one subtest per step that
// can fail, each failing with the problems its run found.
func RunSweep[In any](t *testing.T, s Sweep[In]) {
	t.Helper()
	if s.Client == nil {
		s.Client = NewServer(t).Client()
	}
	runs, err := s.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range runs {
		t.Run("abort "+res.Aborted, func(t *testing.T) {
			for _, p := range res.Problems {
				t.Error(p)
			}
		})
	}
}

func checkSweepRun(ctx context.Context, c *saga.Client, f saga.FlowRef, rec *Recorder, st *saga.State, failed string, positions map[string]int) (compensated, problems []string, err error) {
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	evs, err := c.Timeline(ctx, f, st.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("sagatest: timeline %s/%s: %w", f.Name(), st.ID, err)
	}
	// The saga's own log says which steps completed and were compensated:
	// the recorder sees no call for a step bound with a nil compensation.
	var completed []string
	for _, e := range evs {
		switch e.Phase {
		case saga.PhaseDone:
			completed = append(completed, e.Step)
		case saga.PhaseCompensated:
			compensated = append(compensated, e.Step)
		}
	}
	for _, ss := range st.Steps {
		switch {
		case ss.Name == failed:
			if ss.Status != saga.StepFailed {
				fail("step %s is %s, want failed", ss.Name, ss.Status)
			}
		case slices.Contains(completed, ss.Name):
			if ss.Status != saga.StepCompensated {
				fail("step %s completed but is %s, want compensated", ss.Name, ss.Status)
			}
		case ss.Position < positions[failed]:
			fail("step %s before the failed step never completed (%s)", ss.Name, ss.Status)
		case ss.Status != saga.StepPending && ss.Status != saga.StepSkipped:
			fail("step %s never ran but is %s", ss.Name, ss.Status)
		}
	}
	// Each completed step compensated exactly once, in reverse order; no
	// compensation handler ran for a step that did not complete, or twice.
	if len(compensated) != len(completed) {
		fail("compensations %q, want one for each completed step %q", compensated, completed)
	}
	for _, name := range completed {
		if n := count(compensated, name); n != 1 {
			fail("step %s compensated %d times, want once", name, n)
		}
	}
	calls := rec.Calls(st.ID)
	for _, call := range calls {
		if step, ok := cut(call, ":compensation"); ok && (!slices.Contains(completed, step) || count(calls, call) != 1) {
			fail("compensation handler of %s ran %d times (completed steps %q)", step, count(calls, call), completed)
		}
	}
	for i := 1; i < len(compensated); i++ {
		if positions[compensated[i]] > positions[compensated[i-1]] {
			fail("compensations out of reverse order: %q", compensated)
		}
	}
	return compensated, problems, nil
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
