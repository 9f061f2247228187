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
	w, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	defer w.close()
	var out []SweepRun
	for _, step := range w.steps {
		res, err := w.run(ctx, step)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

// RunSweep runs the sweep (see Sweep.Run) with one subtest per step that
// can fail, each running its saga (so its time is the run's) and failing
// with the problems its run found.
func RunSweep[In any](t *testing.T, s Sweep[In]) {
	t.Helper()
	if s.Client == nil {
		s.Client = NewServer(t).Client()
	}
	w, err := s.start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	for _, step := range w.steps {
		t.Run("abort "+step, func(t *testing.T) {
			res, err := w.run(context.Background(), step)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range res.Problems {
				t.Error(p)
			}
		})
	}
}

// sweeper is a sweep under way: its client, its runner (aborting the step
// each saga names) and what it recorded.
type sweeper[In any] struct {
	s         Sweep[In]
	c         *saga.Client
	rec       *Recorder
	positions map[string]int
	steps     []string // those that can fail, in order
	runID     int64
	close     func()

	mu      sync.Mutex
	abortAt map[string]string // saga id -> step that aborts
}

// start starts the sweep's server (when it has no client) and runner.
func (s Sweep[In]) start(ctx context.Context) (*sweeper[In], error) {
	if s.Flow == nil || s.Bind == nil {
		return nil, fmt.Errorf("sagatest: sweep needs a Flow and a Bind")
	}
	if s.Timeout == 0 {
		s.Timeout = 30 * time.Second
	}
	w := &sweeper[In]{s: s, c: s.Client, rec: NewRecorder(), positions: map[string]int{}, abortAt: map[string]string{}, runID: time.Now().UnixNano()}
	var closers []func()
	w.close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if w.c == nil {
		srv, err := StartServer()
		if err != nil {
			return nil, fmt.Errorf("sagatest: sweep server: %w", err)
		}
		closers = append(closers, srv.Shutdown)
		w.c = srv.Client()
	}
	for _, st := range s.Flow.Describe().Steps {
		w.positions[st.Name] = st.Position
		if st.Kind != describe.Retriable { // retried until it succeeds: it cannot abort
			w.steps = append(w.steps, st.Name)
		}
	}
	r, err := saga.NewRunner(w.c,
		saga.WithInterceptor(func(ctx context.Context, info saga.Info, next func(context.Context) error) error {
			w.mu.Lock()
			target := w.abortAt[info.ID]
			w.mu.Unlock()
			if info.Phase == saga.PhaseAction && info.Step == target {
				return saga.Abortf("sweep: %s aborts", target)
			}
			return next(ctx)
		}),
		saga.WithInterceptor(w.rec.Interceptor()))
	if err != nil {
		w.close()
		return nil, fmt.Errorf("sagatest: sweep runner: %w", err)
	}
	if err := s.Bind(r); err != nil {
		w.close()
		return nil, fmt.Errorf("sagatest: sweep bind: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- r.Run(rctx) }()
	closers = append(closers, func() { cancel(); <-errc })
	select {
	case <-r.Ready():
	case err := <-errc:
		errc <- err
		w.close()
		return nil, fmt.Errorf("sagatest: sweep runner: %w", err)
	}
	return w, nil
}

// run starts one saga whose action at step aborts, and checks how it
// ended.
func (w *sweeper[In]) run(ctx context.Context, step string) (SweepRun, error) {
	id := fmt.Sprintf("sweep-%s-%d", step, w.runID)
	w.mu.Lock()
	w.abortAt[id] = step
	w.mu.Unlock()
	res := SweepRun{Aborted: step}
	if err := saga.Start(ctx, w.c, w.s.Flow, id, w.s.Input); err != nil {
		return res, fmt.Errorf("sagatest: sweep start: %w", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, w.s.Timeout)
	st, err := Wait(wctx, w.c, w.s.Flow, id)
	wcancel()
	switch {
	case err != nil:
		// Not ended in time: say where it stands, step by step.
		res.Problems = append(res.Problems, w.unfinished(ctx, id, step))
	case st.Status != saga.StatusCompensated:
		res.Status = st.Status
		res.Problems = append(res.Problems, fmt.Sprintf("with %s aborting, the saga ended %s, want compensated (reason %q); %s", step, st.Status, st.Reason, w.undone(ctx, st)))
	default:
		res.Status = st.Status
		res.Compensated, res.Problems, err = checkSweepRun(ctx, w.c, w.s.Flow, w.rec, st, step, w.positions)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// unfinished says where a sweep's saga stands when it did not end in
// time: which step aborted, what should have been undone, what was, and
// each step that has not finished, with its error.
func (w *sweeper[In]) unfinished(ctx context.Context, id, step string) string {
	st, err := w.c.Get(ctx, w.s.Flow, id)
	if err != nil {
		return fmt.Sprintf("with %s aborting, the saga did not end within %v: %v", step, w.s.Timeout, err)
	}
	return fmt.Sprintf("with %s aborting, the saga is still %s after %v (reason %q); %s", step, st.Status, w.s.Timeout, st.Reason, w.undone(ctx, st))
}

// undone says which steps should have been undone (those that completed),
// which were, and where each other step of the saga stands.
func (w *sweeper[In]) undone(ctx context.Context, st *saga.State) string {
	evs, err := w.c.Timeline(ctx, w.s.Flow, st.ID)
	if err != nil {
		return fmt.Sprintf("its timeline cannot be read: %v", err)
	}
	var completed, compensated []string
	for _, e := range evs {
		switch e.Phase {
		case saga.PhaseDone:
			completed = append(completed, e.Step)
		case saga.PhaseCompensated:
			compensated = append(compensated, e.Step)
		}
	}
	out := fmt.Sprintf("expected undone %q, undone %q", completed, compensated)
	for _, ss := range st.Steps {
		switch ss.Status {
		case saga.StepPending, saga.StepSkipped, saga.StepCompensated:
			continue
		}
		out += fmt.Sprintf("; step %s is %s", ss.Name, ss.Status)
		if ss.CompensationAttempts > 0 {
			out += fmt.Sprintf(" after %d compensation attempt(s)", ss.CompensationAttempts)
		}
		if ss.CompensationError != "" {
			out += fmt.Sprintf(": compensation error %q", ss.CompensationError)
		} else if ss.Error != "" {
			out += fmt.Sprintf(": %q", ss.Error)
		}
		if ss.Waiting != "" {
			out += " (" + ss.Waiting + ")"
		}
	}
	return out
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
