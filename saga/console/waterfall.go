package console

import (
	"context"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/describe"
)

// waterfall is a saga drawn over time from its log, as the saga page shows
// it: a lane per step, with bars for what happened there and marks for
// the events of note. Times come from the log; only the end of a bar
// still open (a step under way now) is the console's clock.
type waterfall struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"` // the last event's, or now while something is open
	Lanes []lane    `json:"lanes"`
	Marks []mark    `json:"marks"`
	// Parent is, for a child saga, the saga and step that started it.
	Parent *sagaLink `json:"parent,omitempty"`
}

// sagaLink names another saga: the parent, or a step's child.
type sagaLink struct {
	Flow string `json:"flow"`
	ID   string `json:"id"`
	Step string `json:"step,omitempty"` // the parent's step, for a parent
}

// lane is one step's row.
type lane struct {
	Step  string    `json:"step"`
	Owner string    `json:"owner,omitempty"` // the service that runs it, as the flow declares it
	Child *sagaLink `json:"child,omitempty"` // the child saga the step runs, once triggered
	Bars  []bar     `json:"bars"`
}

// Kinds of bar.
const (
	barAction       = "action"       // the first attempt of a step's action, from its trigger to its outcome
	barRetry        = "retry"        // a later attempt, from the failure before it (its backoff included) to its outcome
	barWaiting      = "waiting"      // a step completed later, from its action to the outcome from outside
	barCompensation = "compensation" // an attempt of its compensation, from when it fell due (or the failed attempt before)
)

// bar is a span of one step: an attempt of its action, a wait, an attempt
// of its compensation.
type bar struct {
	Kind    string    `json:"kind"`
	Attempt int       `json:"attempt"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	// Outcome is the phase of the event that ended it (done, retry,
	// failed, waiting, compensated, undo-retry, parked…); empty while Open.
	Outcome string `json:"outcome,omitempty"`
	Open    bool   `json:"open,omitempty"`
	// Failed marks a bar whose outcome failed the step or parked the saga.
	Failed bool   `json:"failed,omitempty"`
	Note   string `json:"note,omitempty"` // the error, or whom a wait is on
}

// mark is an instant of note: the saga's start and end, a failure, a
// deadline, an operator's act, a step skipped.
type mark struct {
	Time    time.Time `json:"time"`
	Step    string    `json:"step"`
	Phase   string    `json:"phase"`
	Failure bool      `json:"failure,omitempty"` // what made the saga compensate, or park
	Note    string    `json:"note,omitempty"`
}

// phaseWaiting is the phase of the event that records a step completed
// later started: it waits for its outcome from outside (the log's
// "waiting"; the face names no constant for it).
const phaseWaiting saga.Phase = "waiting"

// failing are the phases that fail a step, or the saga.
func failing(p saga.Phase) bool {
	switch p {
	case saga.PhaseFailed, saga.PhaseTimedOut, saga.PhaseAbandoned, saga.PhaseParked, saga.PhaseDeadline, saga.PhaseCancelled:
		return true
	}
	return false
}

// flowDef returns the registered definition of a flow version, or nil
// when the registry has none or cannot be read (the waterfall then names
// no owners).
func (h *handler) flowDef(ctx context.Context, flow string, version int) *describe.Flow {
	flows, err := h.op.Flows(ctx)
	if err != nil {
		return nil
	}
	for _, f := range flows {
		if f.Name == flow && f.Version == version {
			return &f
		}
	}
	return nil
}

// dueUndo is the set of steps whose compensation is due in st, as the
// engine decides it (a saga's log holds its states as recorded, where a
// step whose compensation is due still reads completed; Get shows it
// compensating): while the saga compensates, the completed (or unknown),
// compensatable steps of the last position that has any, once none of
// that or a later position is still running.
func dueUndo(st *saga.State) map[string]bool {
	if st.Status != saga.StatusCompensating {
		return nil
	}
	last := -1
	for _, s := range st.Steps {
		last = max(last, s.Position)
	}
	for p := last; p >= 0; p-- {
		due := map[string]bool{}
		for _, s := range st.Steps {
			if s.Position != p {
				continue
			}
			if s.Status == saga.StepRunning {
				return nil
			}
			if (s.Status == saga.StepCompleted || s.Status == saga.StepUnknown) && s.Kind == describe.Compensatable {
				due[s.Name] = true
			}
		}
		if len(due) > 0 {
			return due
		}
	}
	return nil
}

// drawWaterfall computes the waterfall of a saga from its timeline (the
// log, in order, each event with the state after it) and its flow
// version's definition (nil when the registry has none: no owners).
// Something still open ends at now.
func drawWaterfall(tl []saga.Event, def *describe.Flow, now time.Time) waterfall {
	w := waterfall{Lanes: []lane{}, Marks: []mark{}}
	if len(tl) == 0 {
		return w
	}
	w.Start, w.End = tl[0].Time, tl[len(tl)-1].Time
	last := tl[len(tl)-1].State
	if last == nil {
		return w
	}
	if p := last.Parent; p != nil {
		w.Parent = &sagaLink{Flow: p.Flow, ID: p.ID, Step: p.Step}
	}
	steps := map[string]describe.Step{}
	if def != nil {
		for _, s := range def.Steps {
			steps[s.Name] = s
		}
	}
	index := map[string]int{}
	for _, s := range last.Steps {
		index[s.Name] = len(w.Lanes)
		w.Lanes = append(w.Lanes, lane{Step: s.Name, Owner: steps[s.Name].Owner, Bars: []bar{}})
	}
	// open is, per lane, the index of its bar still open (-1: none);
	// attempts and undos count its action's and compensation's bars.
	open := make([]int, len(w.Lanes))
	attempts := make([]int, len(w.Lanes))
	undos := make([]int, len(w.Lanes))
	status := make([]saga.StepStatus, len(w.Lanes))
	for i := range open {
		open[i], status[i] = -1, saga.StepPending
	}
	begin := func(i int, kind string, attempt int, at time.Time, note string) {
		open[i] = len(w.Lanes[i].Bars)
		w.Lanes[i].Bars = append(w.Lanes[i].Bars, bar{Kind: kind, Attempt: attempt, Start: at, End: at, Note: note})
	}
	end := func(i int, e saga.Event, note string) {
		if open[i] < 0 { // no trigger in the log before it: a bar of no length
			begin(i, barAction, max(attempts[i], 1), e.Time, "")
		}
		b := &w.Lanes[i].Bars[open[i]]
		b.End, b.Outcome, b.Failed = e.Time, string(e.Phase), failing(e.Phase)
		if note != "" {
			b.Note = note
		}
		open[i] = -1
	}
	for _, e := range tl {
		st := e.State
		if st == nil {
			continue
		}
		i, isStep := index[e.Step]
		var ss *saga.StepState
		if isStep {
			ss = st.Step(e.Step)
		}
		// What the event says of its own step.
		if isStep && ss != nil {
			switch e.Phase {
			case saga.PhaseRetry:
				end(i, e, ss.Error)
				attempts[i]++
				begin(i, barRetry, attempts[i], e.Time, "")
			case phaseWaiting:
				end(i, e, "")
				begin(i, barWaiting, attempts[i], e.Time, "on "+ss.WaitingOn)
			case saga.PhaseDone:
				end(i, e, "")
			case saga.PhaseFailed, saga.PhaseTimedOut, saga.PhaseAbandoned:
				end(i, e, ss.Error)
			case saga.PhaseCompensationRetry:
				end(i, e, ss.CompensationError)
				undos[i]++
				begin(i, barCompensation, undos[i], e.Time, "")
			case saga.PhaseCompensated:
				end(i, e, "")
			case saga.PhaseParked:
				end(i, e, ss.CompensationError)
			}
		}
		// The marks.
		switch {
		case failing(e.Phase):
			m := mark{Time: e.Time, Step: e.Step, Phase: string(e.Phase), Failure: true, Note: st.Reason}
			if ss != nil && e.Phase == saga.PhaseParked {
				m.Note = ss.CompensationError
			} else if ss != nil && ss.Error != "" {
				m.Note = ss.Error
			}
			w.Marks = append(w.Marks, m)
		case !isStep || e.Phase == saga.PhaseSkipped:
			w.Marks = append(w.Marks, mark{Time: e.Time, Step: e.Step, Phase: string(e.Phase)})
		}
		// What the state after it says of every step: triggered now, or
		// its compensation due now.
		due := dueUndo(st)
		for _, s := range st.Steps {
			j, ok := index[s.Name]
			if !ok {
				continue
			}
			if due[s.Name] {
				s.Status = saga.StepCompensating
			}
			prev := status[j]
			status[j] = s.Status
			switch {
			case prev == saga.StepPending && (s.Status == saga.StepRunning || s.Status == saga.StepWaiting):
				attempts[j] = 1
				if open[j] < 0 {
					begin(j, barAction, 1, e.Time, "")
				}
			case prev != saga.StepCompensating && s.Status == saga.StepCompensating:
				if open[j] >= 0 { // an action still open when the saga turned (it may end later)
					continue
				}
				undos[j]++
				begin(j, barCompensation, undos[j], e.Time, "")
			}
			if s.Status == saga.StepCompensating && open[j] < 0 && prev == saga.StepCompensating && e.Step == s.Name &&
				(e.Phase == saga.PhaseDone || e.Phase == saga.PhaseTimedOut || e.Phase == saga.PhaseAbandoned) {
				// Its action ended after the saga turned: the
				// compensation is due from now.
				undos[j]++
				begin(j, barCompensation, undos[j], e.Time, "")
			}
		}
	}
	for i, s := range last.Steps {
		if def == nil || steps[s.Name].Child == "" || w.Lanes[i].Child != nil || s.Status == saga.StepPending || s.Status == saga.StepSkipped {
			continue
		}
		w.Lanes[i].Child = &sagaLink{Flow: steps[s.Name].Child, ID: saga.ChildID(last.ID, s.Name)}
	}
	// What is still open runs until now.
	for i := range w.Lanes {
		if open[i] < 0 {
			continue
		}
		b := &w.Lanes[i].Bars[open[i]]
		b.Open = true
		if now.After(b.End) {
			b.End = now
		}
		if b.End.After(w.End) {
			w.End = b.End
		}
	}
	return w
}
