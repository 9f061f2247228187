package saga_test

import (
	"context"
	"testing"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
)

func TestHappyPath(t *testing.T) {
	e := newEnv(t, 0, nil)
	e.start(t, "o1")
	st := e.await(t, "o1", saga.StatusCompleted)
	for _, ss := range st.Steps {
		if ss.Status != saga.StepCompleted || ss.Attempts != 1 {
			t.Errorf("step %s: %s after %d attempts", ss.Name, ss.Status, ss.Attempts)
		}
	}
	tl := sagatest.Timeline(t, e.c, e.s.flow.Name(), "o1")
	if len(tl) != 6 || tl[0] != "_saga:start" || tl[1] != "charge:done" || tl[4] != "confirm:done" || tl[5] != "notify:done" {
		t.Errorf("timeline %q", tl)
	}
}

func TestAbortCompensates(t *testing.T) {
	e := newEnv(t, 0, nil)
	e.l.on("o2", "invoice:action", func(context.Context, int) error { return saga.Abortf("no invoice") })
	e.start(t, "o2")
	st := e.await(t, "o2", saga.StatusCompensated)
	if st.Step("charge").Status != saga.StepCompensated {
		t.Errorf("charge is %s", st.Step("charge").Status)
	}
	t.Log(sagatest.Timeline(t, e.c, e.s.flow.Name(), "o2"))
}
