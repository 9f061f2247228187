package engine

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// st builds a state from step specs "name:position:status".
func st(status Status, steps ...StepState) *State {
	return &State{Status: status, Steps: steps}
}

func step(name string, pos int, s StepStatus) StepState {
	return StepState{Name: name, Position: pos, Kind: CompensatableStep, Status: s}
}

func TestDueUndo(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *State
		want []string
	}{
		{"running saga: nothing", st(StatusRunning, step("a", 0, StepCompleted)), nil},
		{"last completed first", st(StatusCompensating, step("a", 0, StepCompleted), step("b", 1, StepCompleted), step("c", 2, StepFailed)), []string{"b"}},
		{"group members together", st(StatusCompensating, step("a", 0, StepCompleted), step("b", 1, StepCompleted), step("c", 1, StepCompleted), step("d", 1, StepFailed)), []string{"b", "c"}},
		{"wait for a running sibling", st(StatusCompensating, step("a", 0, StepCompleted), step("b", 1, StepRunning), step("c", 1, StepFailed)), nil},
		{"skipped and compensated are done", st(StatusCompensating, step("a", 0, StepCompleted), step("b", 1, StepSkipped), step("c", 1, StepCompensated)), []string{"a"}},
		{"pending after the failure is ignored", st(StatusCompensating, step("a", 0, StepCompleted), step("b", 1, StepFailed), step("c", 2, StepPending)), []string{"a"}},
		{"all done", st(StatusCompensating, step("a", 0, StepCompensated), step("b", 1, StepFailed)), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.dueUndo(); !slices.Equal(got, tc.want) {
				t.Errorf("dueUndo = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTransitionsOnlyAlongDeclaredPaths(t *testing.T) {
	now := time.Now()
	s := st(StatusRunning, step("a", 0, StepPending), step("b", 1, StepPending))
	s.Events = 1
	s.settle(now)
	if s.Step("a").Status != StepRunning || s.Step("b").Status != StepPending {
		t.Fatalf("start: %+v", s.Steps)
	}
	if err := s.skip("a", now); err != errNoop {
		t.Errorf("skip in a running saga: %v", err)
	}
	if err := s.complete("b", 1, now); err != errNoop {
		t.Errorf("complete of an untriggered step: %v", err)
	}
	s.Events++
	if err := s.complete("a", 1, now); err != nil {
		t.Fatal(err)
	}
	s.settle(now)
	if s.Step("b").Status != StepRunning || s.Step("b").Trigger != 2 {
		t.Fatalf("b not triggered by a's completion: %+v", s.Step("b"))
	}
	if err := s.complete("a", 1, now); err != errNoop {
		t.Errorf("second completion: %v", err)
	}
	s.Events++
	if err := s.fail("b", 1, "no", now); err != nil {
		t.Fatal(err)
	}
	s.settle(now)
	if s.Status != StatusCompensating || !slices.Equal(s.dueUndo(), []string{"a"}) {
		t.Fatalf("after failure: %s %v", s.Status, s.dueUndo())
	}
	if err := s.compensated("b", 1, now); err != errNoop {
		t.Errorf("compensating a failed step: %v", err)
	}
	if err := s.park("a", 3, "refund refused", now); err != nil {
		t.Fatal(err)
	}
	if s.Status != StatusCompensationFailed {
		t.Fatalf("park: %s", s.Status)
	}
	if err := s.retryParked(); err != nil || s.Status != StatusCompensating || s.Epoch != 1 {
		t.Fatalf("retry: %v %s", err, s.Status)
	}
	if err := s.compensated("a", 1, now); err != nil {
		t.Fatal(err)
	}
	s.settle(now)
	if s.Status != StatusCompensated {
		t.Fatalf("end: %s", s.Status)
	}
	if err := s.retryParked(); err != ErrNotParked {
		t.Errorf("retry of a compensated saga: %v", err)
	}
}

// A pause holds a running step (no attempt spent), the resume restarts
// its clock, and a paused saga that compensates skips a held step that
// never ran (one that had failed an attempt is compensated as unknown).
func TestPauseHoldAndResume(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0).UTC()
	a := &Audit{By: "admin", At: t0, Reason: "x"}
	s := st(StatusRunning, step("a", 0, StepCompleted), step("b", 1, StepRunning))
	s.Steps[0].Kind, s.Steps[1].Kind = CompensatableStep, CompensatableStep
	if err := s.hold("b"); !errors.Is(err, errUnpaused) {
		t.Fatalf("hold of a saga not paused: %v", err)
	}
	if err := s.pause(a); err != nil {
		t.Fatal(err)
	}
	if err := s.pause(a); !errors.Is(err, errNoop) {
		t.Errorf("a second pause: %v", err)
	}
	if err := s.hold("b"); err != nil || !s.Step("b").Held || s.Step("b").Attempts != 0 {
		t.Fatalf("hold: %v %+v", err, s.Step("b"))
	}
	if err := s.hold("b"); !errors.Is(err, errNoop) {
		t.Errorf("a second hold: %v", err)
	}
	r := s.clone()
	if err := r.unpause(t0.Add(time.Hour)); err != nil || r.Paused != nil || !r.Step("b").StartedAt.Equal(t0.Add(time.Hour)) || !r.Step("b").Held {
		t.Errorf("unpause: %v %+v", err, r.Step("b"))
	}
	if err := r.unpause(t0); !errors.Is(err, ErrNotPaused) {
		t.Errorf("unpause of a saga not paused: %v", err)
	}
	if err := r.complete("b", 1, t0); err != nil || r.Step("b").Held {
		t.Errorf("the held step's outcome: %v %+v", err, r.Step("b"))
	}
	for _, tc := range []struct {
		attempts int
		want     StepStatus
	}{{0, StepSkipped}, {2, StepUnknown}} {
		c := s.clone()
		c.Step("b").Attempts = tc.attempts
		if err := c.cancel("stop"); err != nil {
			t.Fatal(err)
		}
		c.settle(t0)
		if got := c.Step("b"); got.Status != tc.want || got.Held || c.Paused != nil {
			t.Errorf("cancelled with %d attempts: %+v, paused %v; want %s", tc.attempts, got, c.Paused, tc.want)
		}
	}
	done := st(StatusCompleted)
	if err := done.pause(a); !errors.Is(err, ErrNotRunning) {
		t.Errorf("pause of a completed saga: %v", err)
	}
}
