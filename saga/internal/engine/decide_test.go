package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The runner's decisions are pure functions of a saga's state and what
// happened: these tables need no broker.

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// running is a saga whose step "s" (of kind k, triggered by event 2) is
// running, started at t0, with a deadline when given.
func running(status Status, k StepKind, deadline time.Time) *State {
	return &State{Status: status, Events: 3, Deadline: deadline, Steps: []StepState{
		{Name: "a", Position: 0, Kind: CompensatableStep, Status: StepCompleted, Done: 2},
		{Name: "s", Position: 1, Kind: k, Status: StepRunning, Trigger: 2, StartedAt: t0},
	}}
}

func TestJudgeTrigger(t *testing.T) {
	comp := &stepDef{name: "s", kind: CompensatableStep, timeout: time.Minute}
	pivot := &stepDef{name: "s", kind: PivotStep, timeout: time.Minute}
	done := running(StatusRunning, CompensatableStep, time.Time{})
	done.Steps[1].Status = StepCompleted
	for _, tc := range []struct {
		name      string
		d         *stepDef
		st        *State
		trigger   int
		delivered int
		stale     bool
		now       time.Time
		want      triggerVerdict
	}{
		{"fresh trigger", comp, running(StatusRunning, CompensatableStep, time.Time{}), 2, 1, false, t0, triggerRun},
		{"a sibling's result", comp, running(StatusRunning, CompensatableStep, time.Time{}), 3, 1, false, t0, triggerIgnore},
		{"a step the saga does not have", &stepDef{name: "x"}, running(StatusRunning, CompensatableStep, time.Time{}), 2, 1, false, t0, triggerIgnore},
		{"decided already: a redelivery", comp, done, 2, 2, false, t0, triggerSettled},
		{"compensating, first delivery: never ran", comp, running(StatusCompensating, CompensatableStep, time.Time{}), 2, 1, false, t0, triggerSkip},
		{"compensating, redelivered: may have run", comp, running(StatusCompensating, CompensatableStep, time.Time{}), 2, 2, false, t0, triggerAbandon},
		{"compensating, first delivery of a trigger that waited past the ack wait: a copy may have run", comp, running(StatusCompensating, CompensatableStep, time.Time{}), 2, 1, true, t0, triggerAbandon},
		{"compensating, redelivered pivot: not compensatable", pivot, running(StatusCompensating, PivotStep, time.Time{}), 2, 2, false, t0, triggerSkip},
		{"timeout passed", comp, running(StatusRunning, CompensatableStep, time.Time{}), 2, 3, false, t0.Add(time.Minute), triggerExpired},
		{"saga deadline passed first", comp, running(StatusRunning, CompensatableStep, t0.Add(time.Second)), 2, 1, false, t0.Add(2 * time.Second), triggerExpired},
		{"a pivot has no timeout", pivot, running(StatusRunning, PivotStep, t0.Add(time.Second)), 2, 1, false, t0.Add(time.Hour), triggerRun},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := judgeTrigger(tc.d, tc.st, tc.trigger, tc.delivered, tc.stale, tc.now); got != tc.want {
				t.Errorf("judgeTrigger = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStepBound(t *testing.T) {
	comp := &stepDef{name: "s", kind: CompensatableStep, timeout: time.Minute}
	for _, tc := range []struct {
		name       string
		d          *stepDef
		deadline   time.Time
		wantAt     time.Time
		wantReason string
	}{
		{"timeout", comp, time.Time{}, t0.Add(time.Minute), "timed out after 1m0s"},
		{"deadline sooner", comp, t0.Add(time.Second), t0.Add(time.Second), "saga deadline exceeded"},
		{"timeout sooner", comp, t0.Add(time.Hour), t0.Add(time.Minute), "timed out after 1m0s"},
		{"no timeout, deadline", &stepDef{name: "s", kind: CompensatableStep}, t0.Add(time.Hour), t0.Add(time.Hour), "saga deadline exceeded"},
		{"retriable: unbounded", &stepDef{name: "s", kind: RetriableStep, timeout: time.Minute}, t0.Add(time.Second), time.Time{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := stepBound(tc.d, running(StatusRunning, tc.d.kind, tc.deadline))
			if !b.at.Equal(tc.wantAt) || b.reason != tc.wantReason {
				t.Errorf("stepBound = %v %q, want %v %q", b.at, b.reason, tc.wantAt, tc.wantReason)
			}
		})
	}
}

// apply runs a verdict's transition on a copy of st, as the journal does.
func apply(t *testing.T, v verdict, st *State) *State {
	t.Helper()
	next := st.clone()
	next.Events++
	if err := v.apply(next, t0.Add(time.Second)); err != nil {
		t.Fatalf("%s: %v", v.phase, err)
	}
	next.settle(t0.Add(time.Second))
	return next
}

func TestJudgeAction(t *testing.T) {
	comp := &stepDef{name: "s", kind: CompensatableStep}
	retriable := &stepDef{name: "s", kind: RetriableStep}
	pivot := &stepDef{name: "s", kind: PivotStep}
	b := stepLimit{at: t0.Add(time.Minute), reason: "timed out after 1m0s"}
	plain := errors.New("busy")
	for _, tc := range []struct {
		name       string
		d          *stepDef
		attempt    int
		o          actionResult
		phase      Phase
		retryIn    time.Duration
		deadLetter bool
		step       StepStatus // of s after the transition
		saga       Status
		reason     string // in the step's error or the saga's reason
	}{
		{"success: the last step completes the saga", comp, 1, actionResult{out: []byte(`{}`)}, PhaseDone, 0, false, StepCompleted, StatusCompleted, ""},
		{"late success is recorded and compensated", comp, 1, actionResult{out: []byte(`{}`), late: true}, PhaseDone, 0, false, StepCompleted, StatusCompensating, "its late result is compensated"},
		{"result too large: compensatable is unknown", comp, 1, actionResult{out: []byte(`{}`), tooLarge: 1024}, PhaseTimedOut, 0, false, StepUnknown, StatusCompensating, "over the 1024-byte event limit"},
		{"result too large: pivot fails, and the saga compensates", pivot, 1, actionResult{out: []byte(`{}`), tooLarge: 1024}, PhaseFailed, 0, false, StepFailed, StatusCompensating, "over the 1024-byte event limit"},
		{"abort compensates", comp, 1, actionResult{err: Abort(errors.New("declined"))}, PhaseFailed, 0, false, StepFailed, StatusCompensating, "declined"},
		{"plain error is retried", comp, 1, actionResult{err: plain}, PhaseRetry, 100 * time.Millisecond, false, StepRunning, StatusRunning, "busy"},
		{"backoff doubles", comp, 3, actionResult{err: plain}, PhaseRetry, 400 * time.Millisecond, false, StepRunning, StatusRunning, "busy"},
		{"retries exhausted: an earlier attempt may have made the effect, so it is compensated", comp, 5, actionResult{err: plain}, PhaseTimedOut, 0, false, StepUnknown, StatusCompensating, "retries exhausted after 5 attempts: busy"},
		{"retries exhausted: a pivot fails", pivot, 5, actionResult{err: plain}, PhaseFailed, 0, false, StepFailed, StatusCompensating, "retries exhausted after 5 attempts: busy"},
		{"retriable never exhausts", retriable, 50, actionResult{err: plain}, PhaseRetry, 5 * time.Second, false, StepRunning, StatusRunning, "busy"},
		{"retriable ignores abort", retriable, 1, actionResult{err: Abort(plain)}, PhaseRetry, 100 * time.Millisecond, false, StepRunning, StatusRunning, "busy"},
		{"error after the bound: unknown", comp, 1, actionResult{err: plain, late: true}, PhaseTimedOut, 0, false, StepUnknown, StatusCompensating, "timed out after 1m0s: busy"},
		{"abort after the limit is still an abort", comp, 1, actionResult{err: Abort(plain), late: true}, PhaseFailed, 0, false, StepFailed, StatusCompensating, "busy"},
		{"undecodable input is dead-lettered and fails", comp, 1, actionResult{err: errUndecodable{errors.New("bad json")}}, PhaseFailed, 0, true, StepFailed, StatusCompensating, "undecodable payload: bad json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := judgeAction(tc.d, tc.attempt, tc.o, b)
			if v.phase != tc.phase || v.retryIn != tc.retryIn || (v.deadLetter != "") != tc.deadLetter {
				t.Fatalf("verdict %s retry %v dead-letter %q; want %s %v %v", v.phase, v.retryIn, v.deadLetter, tc.phase, tc.retryIn, tc.deadLetter)
			}
			if v.phase == PhaseDone && string(v.data) != string(tc.o.out) {
				t.Errorf("recorded data %q, want the result", v.data)
			}
			st := apply(t, v, running(StatusRunning, tc.d.kind, time.Time{}))
			s := st.Step("s")
			if s.Status != tc.step || st.Status != tc.saga || !strings.Contains(s.Error+"|"+st.Reason, tc.reason) {
				t.Errorf("after %s: step %s (%q), saga %s (%q); want %s, %s, %q", v.phase, s.Status, s.Error, st.Status, st.Reason, tc.step, tc.saga, tc.reason)
			}
			if s.Status == StepRunning && s.Attempts != tc.attempt {
				t.Errorf("attempts %d, want %d", s.Attempts, tc.attempt)
			}
		})
	}
}

func TestJudgeCompensation(t *testing.T) {
	d := &stepDef{name: "a", kind: CompensatableStep, compRetry: RetryPolicy{MaxAttempts: 3}}
	compensating := func() *State {
		st := running(StatusCompensating, CompensatableStep, time.Time{})
		st.Steps[1].Status = StepFailed
		return st
	}
	// A compensation's error is kept apart from its action's (which
	// succeeded here: no Error), and a success clears it.
	for _, tc := range []struct {
		name    string
		attempt int
		err     error
		phase   Phase
		retryIn time.Duration
		reject  bool
		step    StepStatus
		saga    Status
	}{
		{"done", 1, nil, PhaseCompensated, 0, false, StepCompensated, StatusCompensated},
		{"failed: retried", 1, errors.New("refund api down"), PhaseCompensationRetry, 100 * time.Millisecond, false, StepCompensating, StatusCompensating},
		{"abort is retried too", 2, Abort(errors.New("no")), PhaseCompensationRetry, 200 * time.Millisecond, false, StepCompensating, StatusCompensating},
		{"out of attempts: parked", 3, errors.New("refund api down"), PhaseParked, 0, true, StepCompensationFailed, StatusCompensationFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := judgeCompensation(d, tc.attempt, tc.err)
			if v.phase != tc.phase || v.retryIn != tc.retryIn || (v.reject != "") != tc.reject {
				t.Fatalf("verdict %s retry %v reject %q", v.phase, v.retryIn, v.reject)
			}
			st := apply(t, v, compensating())
			if got := st.view().Step("a").Status; got != tc.step || st.Status != tc.saga {
				t.Errorf("after %s: step %s, saga %s; want %s, %s", v.phase, got, st.Status, tc.step, tc.saga)
			}
			a := st.Step("a")
			if want := ""; tc.err != nil {
				want = tc.err.Error()
				if !strings.Contains(a.CompensationError, want) {
					t.Errorf("after %s: compensation error %q, want %q", v.phase, a.CompensationError, want)
				}
			} else if a.CompensationError != "" {
				t.Errorf("after %s: compensation error %q, want none", v.phase, a.CompensationError)
			}
			if a.Error != "" {
				t.Errorf("after %s: the action's error reads %q: the compensation's went there", v.phase, a.Error)
			}
		})
	}
}

func TestTriggeredVerdicts(t *testing.T) {
	d := &stepDef{name: "s", kind: CompensatableStep}
	for _, tc := range []struct {
		v     triggerVerdict
		from  Status
		phase Phase
		step  StepStatus
	}{
		{triggerSkip, StatusCompensating, PhaseSkipped, StepSkipped},
		{triggerAbandon, StatusCompensating, PhaseAbandoned, StepUnknown},
		{triggerExpired, StatusRunning, PhaseTimedOut, StepUnknown},
	} {
		t.Run(fmt.Sprint(tc.v), func(t *testing.T) {
			v := notRunVerdict(d, tc.v, 2, stepLimit{reason: "timed out after 1m0s"})
			st := apply(t, v, running(tc.from, CompensatableStep, time.Time{}))
			if v.phase != tc.phase || st.Step("s").Status != tc.step {
				t.Errorf("%v: %s, step %s; want %s, %s", tc.v, v.phase, st.Step("s").Status, tc.phase, tc.step)
			}
		})
	}
}

func TestSchemaInvalidFailsAndDeadLetters(t *testing.T) {
	d := &stepDef{name: "s", kind: CompensatableStep}
	v := schemaInvalid(d, 2, "shop.order", errors.New("total: want a number"))
	if v.phase != PhaseFailed || v.deadLetter != "schema-invalid shop.order: total: want a number" || v.retryIn != 0 {
		t.Errorf("verdict %+v", v)
	}
	st := running(StatusRunning, CompensatableStep, time.Time{})
	if err := v.apply(st, t0); err != nil || st.Step("s").Status != StepFailed || st.Step("s").Error != v.deadLetter {
		t.Errorf("applied: %v, step %+v", err, st.Step("s"))
	}
}

func TestOversize(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		out, state, max, want int
	}{
		{"small results always fit", 1024, 1 << 20, 2048, 0},
		{"fits with the state and headers", 10_000, 1000, 20_000, 0},
		{"exactly at the limit fits", 10_000, 1000, 15_096, 0},
		{"one byte over", 10_000, 1001, 15_096, 15_096},
		{"a result over the limit alone", 600_000, 100, 512 * 1024, 512 * 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := oversize(tc.out, tc.state, tc.max); got != tc.want {
				t.Errorf("oversize(%d, %d, %d) = %d, want %d", tc.out, tc.state, tc.max, got, tc.want)
			}
		})
	}
}

func TestStuckOnAnUnreadableTrigger(t *testing.T) {
	compensating := running(StatusCompensating, CompensatableStep, time.Time{})
	done := running(StatusRunning, CompensatableStep, time.Time{})
	done.Steps[1].Status = StepCompleted
	for _, tc := range []struct {
		name    string
		st      *State
		seq     uint64
		trigger uint64
		step    string
		want    bool
	}{
		{"the saga stands on it, its step waits", running(StatusRunning, CompensatableStep, time.Time{}), 7, 7, "s", true},
		{"the saga moved on since", running(StatusRunning, CompensatableStep, time.Time{}), 8, 7, "s", false},
		{"no saga", nil, 7, 7, "s", false},
		{"the saga compensates", compensating, 7, 7, "s", false},
		{"its step is not running", done, 7, 7, "s", false},
		{"a step the saga does not have", running(StatusRunning, CompensatableStep, time.Time{}), 7, 7, "x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stuckOn(tc.st, tc.seq, tc.trigger, tc.step); got != tc.want {
				t.Errorf("stuckOn = %v, want %v", got, tc.want)
			}
		})
	}
	v := unusableTrigger(&stepDef{name: "s"}, 3, "over the size limit")
	if v.phase != PhaseFailed || v.deadLetter != "over the size limit" || v.warn == "" {
		t.Errorf("unusable trigger's verdict %+v", v)
	}
}

func TestUndoDue(t *testing.T) {
	// "a" completed, "s" failed: a's compensation is due.
	due := running(StatusCompensating, CompensatableStep, time.Time{})
	due.Steps[1].Status = StepFailed
	retried := running(StatusCompensating, CompensatableStep, time.Time{})
	retried.Steps[1].Status, retried.Epoch = StepFailed, 1
	compensated := running(StatusCompensating, CompensatableStep, time.Time{})
	compensated.Steps[0].Status, compensated.Steps[1].Status = StepCompensated, StepFailed
	waiting := running(StatusCompensating, CompensatableStep, time.Time{}) // s still runs
	for _, tc := range []struct {
		name  string
		st    *State
		step  string
		epoch int
		want  bool
	}{
		{"due", due, "a", 0, true},
		{"compensated already", compensated, "a", 0, false},
		{"a command from before an operator's retry", retried, "a", 0, false},
		{"the retry's own command", retried, "a", 1, true},
		{"not before a later step's action finished", waiting, "a", 0, false},
		{"a failed step has nothing to undo", due, "s", 0, false},
		{"a step the saga does not have", due, "x", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := undoDue(tc.st, tc.step, tc.epoch); got != tc.want {
				t.Errorf("undoDue = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDeadlinePassed(t *testing.T) {
	deadline := t0.Add(time.Minute)
	for _, tc := range []struct {
		name  string
		fired bool
		now   time.Time
		want  Status // after the transition; "" when it does not apply
	}{
		{"passed", false, deadline, StatusCompensating},
		{"our clock is behind, the broker fired it", true, deadline.Add(-time.Second), StatusCompensating},
		{"our clock is behind and nobody fired it: too early", false, deadline.Add(-time.Second), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := running(StatusRunning, CompensatableStep, deadline)
			v := deadlinePassed(tc.fired)
			if v.phase != PhaseDeadline || !v.done {
				t.Fatalf("verdict %+v", v)
			}
			err := v.apply(st, tc.now)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("applied before the deadline: %+v", st)
			case tc.want != "" && (err != nil || st.Status != tc.want):
				t.Errorf("status %s, %v; want %s", st.Status, err, tc.want)
			}
		})
	}
}

func TestJudgeEnd(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want endVerdict
	}{
		{nil, endAck},
		{errors.New("database down"), endRetry},
		{Abort(errors.New("no such order")), endDeadLetter},
		{fmt.Errorf("wrapped: %w", Abort(errors.New("no such order"))), endDeadLetter},
	} {
		if got := judgeEnd(tc.err); got != tc.want {
			t.Errorf("judgeEnd(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestVersionStand(t *testing.T) {
	since, ended := t0, t0.Add(time.Hour)
	for _, tc := range []struct {
		name    string
		mark    VersionStatus
		left    int
		lastEnd time.Time
		want    VersionStatus
		drained time.Time
	}{
		{"active stays active", VersionActive, 0, ended, VersionActive, time.Time{}},
		{"draining with sagas left", VersionDraining, 2, ended, VersionDraining, time.Time{}},
		{"drained: since its last saga ended", VersionDraining, 0, ended, VersionDrained, ended},
		{"drained with none left at the drain: since the drain", VersionDraining, 0, since.Add(-time.Hour), VersionDrained, since},
		{"drained with no saga ever", VersionDraining, 0, time.Time{}, VersionDrained, since},
		{"retired stays retired", VersionRetired, 0, ended, VersionRetired, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, at := versionStand(tc.mark, tc.left, since, tc.lastEnd)
			if got != tc.want || !at.Equal(tc.drained) {
				t.Errorf("versionStand = %s %v; want %s %v", got, at, tc.want, tc.drained)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	for s, want := range map[VersionStatus]bool{"": false, VersionActive: false, VersionDraining: true, VersionRetired: true, VersionDrained: true} {
		if refused(s) != want {
			t.Errorf("refused(%q) = %v, want %v", s, !want, want)
		}
	}
}
