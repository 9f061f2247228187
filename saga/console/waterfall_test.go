package console

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/describe"
)

// logOf builds a saga log: each event with the state after it, made by
// edit from the one before.
type logOf struct {
	t0     time.Time
	events []saga.Event
	st     saga.State
}

func newLog(id string, steps ...string) *logOf {
	l := &logOf{t0: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	l.st = saga.State{Flow: "trip", Version: 1, ID: id, Status: saga.StatusRunning}
	for i, s := range steps {
		l.st.Steps = append(l.st.Steps, saga.StepState{Name: s, Position: i, Status: saga.StepPending, Kind: describe.Compensatable})
	}
	return l
}

// at appends step:phase at t0+ms, after edit changed the state.
func (l *logOf) at(ms int, step string, phase saga.Phase, edit func(s *saga.State)) {
	if edit != nil {
		edit(&l.st)
	}
	st := l.st
	st.Steps = append([]saga.StepState(nil), l.st.Steps...)
	l.events = append(l.events, saga.Event{Sequence: uint64(len(l.events) + 1), Step: step, Phase: phase,
		Time: l.t0.Add(time.Duration(ms) * time.Millisecond), State: &st})
}

func set(name string, f func(s *saga.StepState)) func(*saga.State) {
	return func(st *saga.State) { f(st.Step(name)) }
}

// bars writes a lane's bars as "kind#attempt start-end outcome [failed] (note)",
// times in ms from t0, "open" for one still open.
func (l *logOf) bars(ln lane) string {
	var out []string
	for _, b := range ln.Bars {
		s := fmt.Sprintf("%s#%d %d-%d", b.Kind, b.Attempt, b.Start.Sub(l.t0).Milliseconds(), b.End.Sub(l.t0).Milliseconds())
		if b.Open {
			s += " open"
		} else {
			s += " " + b.Outcome
		}
		if b.Failed {
			s += " failed"
		}
		if b.Note != "" {
			s += " (" + b.Note + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

func TestWaterfallOfACompensatedSaga(t *testing.T) {
	l := newLog("t1", "hold", "pay")
	l.at(0, "_saga", saga.PhaseStart, set("hold", func(s *saga.StepState) { s.Status = saga.StepRunning }))
	l.at(40, "hold", saga.PhaseDone, func(st *saga.State) {
		st.Step("hold").Status = saga.StepCompleted
		st.Step("pay").Status = saga.StepRunning
	})
	l.at(100, "pay", saga.PhaseRetry, set("pay", func(s *saga.StepState) { s.Error = "bank busy" }))
	l.at(250, "pay", saga.PhaseFailed, func(st *saga.State) {
		st.Status, st.Reason = saga.StatusCompensating, "pay: card declined"
		st.Step("pay").Status, st.Step("pay").Error = saga.StepFailed, "card declined"
		// hold reads completed in the log: its compensation is due
		// (dueUndo), as Get would show it.
	})
	l.at(300, "hold", saga.PhaseCompensationRetry, set("hold", func(s *saga.StepState) { s.CompensationError = "warehouse api down" }))
	l.at(420, "hold", saga.PhaseCompensated, func(st *saga.State) {
		st.Status = saga.StatusCompensated
		st.Step("hold").Status = saga.StepCompensated
	})
	def := &describe.Flow{Name: "trip", Version: 1, Steps: []describe.Step{{Name: "hold", Owner: "warehouse"}, {Name: "pay", Owner: "bank"}}}
	w := drawWaterfall(l.events, def, l.t0.Add(time.Hour))

	if !w.Start.Equal(l.t0) || w.End.Sub(l.t0) != 420*time.Millisecond {
		t.Errorf("spans %v to %v, want t0 to t0+420ms: an ended saga ends at its last event", w.Start, w.End)
	}
	if len(w.Lanes) != 2 || w.Lanes[0].Owner != "warehouse" || w.Lanes[1].Owner != "bank" {
		t.Fatalf("lanes %+v, want hold (warehouse) and pay (bank)", w.Lanes)
	}
	for i, want := range []string{
		"action#1 0-40 done, compensation#1 250-300 undo-retry (warehouse api down), compensation#2 300-420 compensated",
		"action#1 40-100 retry (bank busy), retry#2 100-250 failed failed (card declined)",
	} {
		if got := l.bars(w.Lanes[i]); got != want {
			t.Errorf("lane %s:\n got %s\nwant %s", w.Lanes[i].Step, got, want)
		}
	}
	var marks []string
	for _, m := range w.Marks {
		marks = append(marks, fmt.Sprintf("%s:%s@%d failure=%v %s", m.Step, m.Phase, m.Time.Sub(l.t0).Milliseconds(), m.Failure, m.Note))
	}
	if got, want := strings.Join(marks, "; "), "_saga:start@0 failure=false ; pay:failed@250 failure=true card declined"; got != want {
		t.Errorf("marks:\n got %s\nwant %s", got, want)
	}
}

func TestWaterfallOfARunningChildAndParent(t *testing.T) {
	// A child saga, waiting at its step completed later; then its parent
	// with the step that runs it.
	l := newLog("o1-ship", "label")
	l.at(0, "_saga", saga.PhaseStart, func(st *saga.State) {
		st.Parent = &saga.ParentRef{Flow: "order", ID: "o1", Step: "ship"}
		st.Step("label").Status = saga.StepRunning
	})
	l.at(30, "label", "waiting", set("label", func(s *saga.StepState) { s.Status, s.WaitingOn = saga.StepWaiting, "carrier" }))
	w := drawWaterfall(l.events, nil, l.t0.Add(time.Second))
	if w.Parent == nil || *w.Parent != (sagaLink{Flow: "order", ID: "o1", Step: "ship"}) {
		t.Errorf("parent %+v, want order/o1 step ship", w.Parent)
	}
	if got, want := l.bars(w.Lanes[0]), "action#1 0-30 waiting, waiting#1 30-1000 open (on carrier)"; got != want {
		t.Errorf("label:\n got %s\nwant %s", got, want)
	}
	if w.End.Sub(l.t0) != time.Second {
		t.Errorf("ends at %v, want now: a wait is open", w.End.Sub(l.t0))
	}

	p := newLog("o1", "pack", "ship", "bill")
	p.at(0, "_saga", saga.PhaseStart, set("pack", func(s *saga.StepState) { s.Status = saga.StepRunning }))
	p.at(10, "pack", saga.PhaseDone, func(st *saga.State) {
		st.Step("pack").Status = saga.StepCompleted
		st.Step("ship").Status = saga.StepRunning
	})
	def := &describe.Flow{Name: "order", Version: 1, Steps: []describe.Step{{Name: "pack"}, {Name: "ship", Child: "shipment", ChildVersion: 1}, {Name: "bill"}}}
	w = drawWaterfall(p.events, def, p.t0.Add(50*time.Millisecond))
	if c := w.Lanes[1].Child; c == nil || *c != (sagaLink{Flow: "shipment", ID: saga.ChildID("o1", "ship")}) {
		t.Errorf("ship's child %+v, want shipment/%s", c, saga.ChildID("o1", "ship"))
	}
	if w.Lanes[2].Child != nil || len(w.Lanes[2].Bars) != 0 {
		t.Errorf("bill, never triggered: %+v, want no bar and no child", w.Lanes[2])
	}
	if got, want := p.bars(w.Lanes[1]), "action#1 10-50 open"; got != want {
		t.Errorf("ship: got %s, want %s", got, want)
	}
}

func TestWaterfallOfAnEmptyLog(t *testing.T) {
	w := drawWaterfall(nil, nil, time.Now())
	if len(w.Lanes) != 0 || len(w.Marks) != 0 || w.Lanes == nil {
		t.Errorf("%+v, want empty lanes and marks (as JSON arrays)", w)
	}
}

// Compensations run in reverse: the last completed step's falls due at
// the failure, the one before it once that one is compensated.
func TestWaterfallCompensatesInReverse(t *testing.T) {
	l := newLog("t2", "a", "b", "c")
	l.at(0, "_saga", saga.PhaseStart, set("a", func(s *saga.StepState) { s.Status = saga.StepRunning }))
	l.at(10, "a", saga.PhaseDone, func(st *saga.State) {
		st.Step("a").Status, st.Step("b").Status = saga.StepCompleted, saga.StepRunning
	})
	l.at(20, "b", saga.PhaseDone, func(st *saga.State) {
		st.Step("b").Status, st.Step("c").Status = saga.StepCompleted, saga.StepRunning
	})
	l.at(30, "c", saga.PhaseFailed, func(st *saga.State) {
		st.Status = saga.StatusCompensating
		st.Step("c").Status, st.Step("c").Error = saga.StepFailed, "no"
	})
	l.at(50, "b", saga.PhaseCompensated, set("b", func(s *saga.StepState) { s.Status = saga.StepCompensated }))
	l.at(80, "a", saga.PhaseCompensated, func(st *saga.State) {
		st.Status = saga.StatusCompensated
		st.Step("a").Status = saga.StepCompensated
	})
	w := drawWaterfall(l.events, nil, l.t0.Add(time.Hour))
	for i, want := range []string{
		"action#1 0-10 done, compensation#1 50-80 compensated",
		"action#1 10-20 done, compensation#1 30-50 compensated",
		"action#1 20-30 failed failed (no)",
	} {
		if got := l.bars(w.Lanes[i]); got != want {
			t.Errorf("lane %s:\n got %s\nwant %s", w.Lanes[i].Step, got, want)
		}
	}
}
