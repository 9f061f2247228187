package saga_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/describe"
)

type (
	A struct{ X int }
	B struct{ Y int }
)

func TestDefineRejects(t *testing.T) {
	used := saga.NewStep[A, B]("used")
	saga.MustDefine[A]("owner", 1, used)
	for _, tc := range []struct {
		name  string
		fname string
		ver   int
		items func() []saga.Item
		want  error
	}{
		{"bad flow name", "a.b", 1, func() []saga.Item { return []saga.Item{saga.NewStep[A, B]("s")} }, saga.ErrInvalidFlow},
		{"version 0", "f", 0, func() []saga.Item { return []saga.Item{saga.NewStep[A, B]("s")} }, saga.ErrInvalidFlow},
		{"no steps", "f", 1, func() []saga.Item { return nil }, saga.ErrInvalidFlow},
		{"bad step name", "f", 1, func() []saga.Item { return []saga.Item{saga.NewStep[A, B]("_saga")} }, saga.ErrInvalidFlow},
		{"duplicate step", "f", 1, func() []saga.Item { return []saga.Item{saga.NewStep[A, A]("s"), saga.NewStep[A, A]("s")} }, saga.ErrInvalidFlow},
		{"step in two flows", "f", 1, func() []saga.Item { return []saga.Item{used} }, saga.ErrInvalidFlow},
		{"types do not chain", "f", 1, func() []saga.Item { return []saga.Item{saga.NewStep[A, B]("s1"), saga.NewStep[A, B]("s2")} }, saga.ErrInvalidFlow},
		{"after a group takes the flow input", "f", 1, func() []saga.Item {
			return []saga.Item{saga.Parallel(saga.NewStep[A, B]("p1"), saga.NewStep[A, B]("p2")), saga.NewStep[B, B]("s")}
		}, saga.ErrInvalidFlow},
		{"empty group", "f", 1, func() []saga.Item { return []saga.Item{saga.Parallel()} }, saga.ErrInvalidFlow},
		{"pivot in a group", "f", 1, func() []saga.Item {
			return []saga.Item{saga.Parallel(saga.NewStep[A, B]("p1", saga.Pivot()), saga.NewStep[A, B]("p2"))}
		}, saga.ErrInvalidFlow},
		{"two pivots", "f", 1, func() []saga.Item {
			return []saga.Item{saga.NewStep[A, A]("p1", saga.Pivot()), saga.NewStep[A, A]("p2", saga.Pivot())}
		}, saga.ErrInvalidFlow},
		{"compensatable after pivot", "f", 1, func() []saga.Item {
			return []saga.Item{saga.NewStep[A, A]("p", saga.Pivot()), saga.NewStep[A, A]("c")}
		}, saga.ErrInvalidFlow},
		{"retriable before pivot", "f", 1, func() []saga.Item {
			return []saga.Item{saga.NewStep[A, A]("r", saga.Retriable()), saga.NewStep[A, A]("p", saga.Pivot())}
		}, saga.ErrInvalidFlow},
		{"two deadlines", "f", 1, func() []saga.Item {
			return []saga.Item{saga.NewStep[A, A]("s"), saga.Deadline(time.Second), saga.Deadline(time.Minute)}
		}, saga.ErrInvalidFlow},
		{"negative timeout", "f", 1, func() []saga.Item { return []saga.Item{saga.NewStep[A, A]("s", saga.WithTimeout(-time.Second))} }, saga.ErrInvalidOption},
		{"nil step", "f", 1, func() []saga.Item {
			var s *saga.Step[A, A]
			return []saga.Item{s}
		}, saga.ErrInvalidFlow},
		{"nil step in a group", "f", 1, func() []saga.Item {
			var s *saga.Step[A, B]
			return []saga.Item{saga.Parallel(saga.NewStep[A, B]("p"), s)}
		}, saga.ErrInvalidFlow},
		{"first step does not take the flow's input", "f", 1, func() []saga.Item { return []saga.Item{saga.NewStep[B, B]("s")} }, saga.ErrInvalidFlow},
		{"compensation named on a pivot", "f", 1, func() []saga.Item {
			return []saga.Item{saga.NewStep[A, A]("p", saga.Pivot(), saga.Undo("unpivot"))}
		}, saga.ErrInvalidFlow},
		{"bad owner", "f", 1, func() []saga.Item { return []saga.Item{saga.NewStep[A, A]("s", saga.Owner("pay ment"))} }, saga.ErrInvalidOption},
		{"negative retry", "f", 1, func() []saga.Item {
			return []saga.Item{saga.NewStep[A, A]("s", saga.WithRetry(saga.RetryPolicy{MaxAttempts: -1}))}
		}, saga.ErrInvalidOption},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := saga.Define[A](tc.fname, tc.ver, tc.items()...)
			if !errors.Is(err, tc.want) {
				t.Errorf("Define = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestHandleRejects(t *testing.T) {
	e := newEnv(t, 0, nil)
	r, _ := saga.NewRunner(e.c)
	loose := saga.NewStep[A, B]("loose")
	if err := saga.Handle(r, loose, nil, nil); !errors.Is(err, saga.ErrInvalidFlow) {
		t.Errorf("unflowed step: %v", err)
	}
	if err := e.s.bind(r, e.l); err != nil {
		t.Fatal(err)
	}
	if err := e.s.bind(r, e.l); !errors.Is(err, saga.ErrBound) {
		t.Errorf("bound twice: %v", err)
	}
	if _, err := saga.NewRunner(e.c, saga.WithConcurrency(0)); !errors.Is(err, saga.ErrInvalidOption) {
		t.Errorf("concurrency 0: %v", err)
	}
	if _, err := saga.NewRunner(e.c, saga.WithAckWait(time.Millisecond)); !errors.Is(err, saga.ErrInvalidOption) {
		t.Errorf("ack wait 1ms: %v", err)
	}
	// Pivot and retriable steps are never compensated: a compensation for
	// one is refused.
	r2, _ := saga.NewRunner(e.c)
	undo := func(context.Context, Order, Confirmed) error { return nil }
	if err := saga.Handle(r2, e.s.confirm, func(context.Context, Order) (Confirmed, error) { return Confirmed{}, nil }, undo); !errors.Is(err, saga.ErrInvalidOption) {
		t.Errorf("compensation on a pivot: %v, want ErrInvalidOption", err)
	}
}

// A flow describes itself: owners and compensation names are what tools
// draw and derive permissions from.
func TestFlowDescribesItsSteps(t *testing.T) {
	pay := saga.NewStep[A, B]("pay", saga.Owner("payment"), saga.Undo("refund"), saga.WithTimeout(time.Second))
	ship := saga.NewStep[A, B]("ship", saga.Owner("shipping"))
	mail := saga.NewStep[A, B]("mail", saga.Owner("notification"))
	done := saga.NewStep[A, A]("done", saga.Owner("order"), saga.Pivot())
	f := saga.MustDefine[A]("described", 2, saga.Parallel(pay, ship, mail), done)
	want := []describe.Step{
		{Name: "pay", Position: 0, Kind: describe.Compensatable, Owner: "payment", Undo: "refund", EventType: "B", Timeout: time.Second},
		{Name: "ship", Position: 0, Kind: describe.Compensatable, Owner: "shipping", EventType: "B"},
		{Name: "mail", Position: 0, Kind: describe.Compensatable, Owner: "notification", EventType: "B"},
		{Name: "done", Position: 1, Kind: describe.Pivot, Owner: "order", EventType: "A"},
	}
	if got := f.Describe().Steps; !slices.Equal(got, want) {
		t.Errorf("Steps:\n got  %+v\n want %+v", got, want)
	}
	if s, ok := f.Describe().Step("done"); !ok || s.Kind != describe.Pivot {
		t.Errorf("Step(done) = %+v %v", s, ok)
	}
	if _, ok := f.Describe().Step("nope"); ok {
		t.Error("Step(nope) found")
	}
}
