package engine

import (
	"strings"
	"testing"
	"time"
)

// An event checks when replaying its step and phase on the state before it
// gives the state it carries; a participant may choose only its own step's
// attempts, error and time.
func TestReplayChecksWhatAnEventMayChange(t *testing.T) {
	t1 := t0.Add(time.Second)
	honest := func(phase Phase, apply func(s *State) error) (*State, *envelope) {
		prev := running(StatusRunning, CompensatableStep, time.Time{})
		prev.StartedAt, prev.UpdatedAt = t0, t0
		prev.Steps = append(prev.Steps, StepState{Name: "last", Position: 2, Kind: CompensatableStep, Status: StepPending})
		next := prev.clone()
		next.Events++
		next.follow(7)
		if err := apply(next); err != nil {
			t.Fatal(err)
		}
		next.settle(t1)
		return prev, &envelope{flow: "f", id: "x", step: "s", phase: phase, state: next}
	}
	for _, tc := range []struct {
		name   string
		phase  Phase
		apply  func(s *State) error
		forge  func(s *State)
		reason string // "" when the event checks
	}{
		{name: "done", phase: PhaseDone, apply: func(s *State) error { return s.complete("s", 2, t1) }},
		{name: "failed, any reason", phase: PhaseFailed, apply: func(s *State) error { return s.fail("s", 3, "card declined", t1) }},
		{name: "retry", phase: PhaseRetry, apply: func(s *State) error { return s.retrying("s", 2, "flaky") }},
		{name: "timed out", phase: PhaseTimedOut, apply: func(s *State) error { return s.timeOut("s", 1, "too slow", t1) }},
		{name: "done with a later time", phase: PhaseDone, apply: func(s *State) error { return s.complete("s", 1, t1) },
			forge: func(s *State) { s.UpdatedAt = s.UpdatedAt.Add(time.Hour) }, reason: "changes more"},
		{name: "done, saga completed", phase: PhaseDone, apply: func(s *State) error { return s.complete("s", 1, t1) },
			forge: func(s *State) { s.Status, s.EndedAt = StatusCompleted, t1 }, reason: "changes more"},
		{name: "done, another step's attempts", phase: PhaseDone, apply: func(s *State) error { return s.complete("s", 1, t1) },
			forge: func(s *State) { s.Steps[0].Attempts = 9 }, reason: "changes more"},
		{name: "done, another step compensated", phase: PhaseDone, apply: func(s *State) error { return s.complete("s", 1, t1) },
			forge: func(s *State) { s.Steps[0].Status = StepCompensated }, reason: "changes more"},
		{name: "failed, saga left running", phase: PhaseFailed, apply: func(s *State) error { return s.fail("s", 1, "no", t1) },
			forge: func(s *State) { s.Status, s.Reason = StatusRunning, "" }, reason: "changes more"},
		{name: "events count rewound", phase: PhaseDone, apply: func(s *State) error { return s.complete("s", 1, t1) },
			forge: func(s *State) { s.Events = 1 }, reason: "changes more"},
		{name: "a compensation of a running step", phase: PhaseCompensated, apply: func(s *State) error { return s.complete("s", 1, t1) },
			reason: "does not apply"},
		{name: "a step the saga lacks", phase: PhaseDone, apply: func(s *State) error { return s.complete("s", 1, t1) },
			forge: func(s *State) { s.Steps[1].Name = "z" }, reason: "no step"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev, env := honest(tc.phase, tc.apply)
			if tc.forge != nil {
				tc.forge(env.state)
			}
			raw := string(encodeState(env.state))
			next, err := replay(prev, 7, env, t1)
			if err == nil && string(encodeState(next)) != raw {
				err = errorString("its state changes more than its step and phase may")
			}
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("an honest %s was refused: %v", tc.phase, err)
			case tc.reason != "" && (err == nil || !strings.Contains(err.Error(), tc.reason)):
				t.Fatalf("got %v, want an error with %q", err, tc.reason)
			}
		})
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// A deadline stands only once it has passed by the reader's clock (give or
// take clockSkew): a participant that schedules the timer early gets a
// deadline event that does not check.
func TestReplayDeadlineOnlyOncePassed(t *testing.T) {
	prev := running(StatusRunning, CompensatableStep, t0.Add(time.Hour))
	prev.StartedAt, prev.UpdatedAt = t0, t0
	rec := func(at time.Time) *envelope {
		next := prev.clone()
		next.Events++
		next.follow(7)
		if err := next.expire(next.Deadline); err != nil {
			t.Fatal(err)
		}
		next.settle(at)
		return &envelope{flow: "f", id: "x", step: "_saga", phase: PhaseDeadline, state: next}
	}
	early := rec(t0.Add(time.Minute))
	if _, err := replay(prev, 7, early, t0.Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "not yet passed") {
		t.Fatalf("an early deadline: %v", err)
	}
	due := rec(t0.Add(time.Hour - time.Second)) // the broker's clock a second ahead
	next, err := replay(prev, 7, due, t0.Add(time.Hour-time.Second))
	if err != nil || string(encodeState(next)) != string(encodeState(due.state)) {
		t.Fatalf("a deadline on time: %v", err)
	}
}
