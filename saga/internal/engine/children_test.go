package engine

import (
	"strings"
	"testing"
	"time"
)

// completedChild is a completed saga of two compensatable steps, a child
// of p (nil: no parent).
func completedChild(p *ParentRef) *State {
	t1 := t0.Add(time.Second)
	s := &State{Flow: "pack", Version: 1, ID: "o1-pack", Status: StatusCompleted, Events: 3, StartedAt: t0, UpdatedAt: t1, EndedAt: t1, Parent: p,
		Steps: []StepState{
			{Name: "pick", Position: 0, Kind: CompensatableStep, Status: StepCompleted, Attempts: 1, Trigger: 1, Done: 2, StartedAt: t0, EndedAt: t0},
			{Name: "label", Position: 1, Kind: CompensatableStep, Status: StepCompleted, Attempts: 1, Trigger: 2, Done: 3, StartedAt: t0, EndedAt: t1},
		}}
	return s
}

// A revert stands only on a completed saga with a parent whose steps are
// all compensatable; it makes the last position's steps due.
func TestReplayRevertOnlyOfAChild(t *testing.T) {
	t2 := t0.Add(2 * time.Second)
	rec := func(prev *State) *envelope {
		next := prev.clone()
		next.Events++
		next.follow(9)
		if err := next.revert(); err != nil {
			// what a forger would write: the honest shape, no check
			next.Status, next.EndedAt, next.Reason = StatusCompensating, time.Time{}, "its parent saga order/o1 compensates"
		}
		next.settle(t2)
		return &envelope{flow: "pack", id: "o1-pack", step: "_saga", phase: PhaseReverted, state: next}
	}
	child := completedChild(&ParentRef{Flow: "order", ID: "o1", Step: "pack"})
	env := rec(child)
	next, err := replay(child, 9, env, t2)
	if err != nil || string(encodeState(next)) != string(encodeState(env.state)) {
		t.Fatalf("an honest revert: %v", err)
	}
	if next.Status != StatusCompensating || strings.Join(next.dueUndo(), ",") != "label" {
		t.Fatalf("after a revert: %s, due %v", next.Status, next.dueUndo())
	}
	orphan := completedChild(nil)
	if _, err := replay(orphan, 9, rec(orphan), t2); err == nil || !strings.Contains(err.Error(), "no parent") {
		t.Fatalf("a revert of a saga with no parent: %v", err)
	}
	pivoted := completedChild(&ParentRef{Flow: "order", ID: "o1", Step: "pack"})
	pivoted.Steps[1].Kind = PivotStep
	if _, err := replay(pivoted, 9, rec(pivoted), t2); err == nil || !strings.Contains(err.Error(), "pivot") {
		t.Fatalf("a revert of a saga that ran a pivot: %v", err)
	}
	running := completedChild(&ParentRef{Flow: "order", ID: "o1", Step: "pack"})
	running.Status, running.EndedAt = StatusRunning, time.Time{}
	if _, err := replay(running, 9, rec(running), t2); err == nil {
		t.Fatal("a revert of a running saga stood")
	}
}

// The parent travels last among the trailing fields, with or without a
// trace id, and states without it decode as before.
func TestCodecParent(t *testing.T) {
	p := &ParentRef{Flow: "order", ID: "o-1_x", Step: "pack"}
	for _, trace := range []string{"", "4bf92f3577b34da6a3ce929d0e0e4736"} {
		s := completedChild(p)
		s.TraceID = trace
		raw := string(encodeState(s))
		if !strings.HasSuffix(raw, "|"+trace+"||order.o-1_x.pack") {
			t.Fatalf("encoded %q", raw)
		}
		got, err := decodeState("pack", "o1-pack", raw)
		if err != nil || got.Parent == nil || *got.Parent != *p || got.TraceID != trace {
			t.Fatalf("decoded %+v, %v", got, err)
		}
		if string(encodeState(got)) != raw {
			t.Fatalf("round trip changed %q", raw)
		}
	}
	plain := string(encodeState(completedChild(nil)))
	if got, err := decodeState("pack", "o1-pack", plain); err != nil || got.Parent != nil {
		t.Fatalf("no parent: %+v, %v", got, err)
	}
	for _, bad := range []string{plain + "|||", plain + "|||order.o1", plain + "|||order.o1.pack.x", plain + "|||order.o 1.pack", plain + "||||x"} {
		if _, err := decodeState("pack", "o1-pack", bad); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
}

func TestChildID(t *testing.T) {
	if got := ChildID("o1", "pack"); got != "o1-pack" {
		t.Fatalf("ChildID = %q", got)
	}
	long := strings.Repeat("x", 128)
	a, b := ChildID(long, "pack"), ChildID(long, "ship")
	if !ValidID(a) || len(a) != 128 || a == b || a != ChildID(long, "pack") {
		t.Fatalf("long ids: %q %q", a, b)
	}
}
