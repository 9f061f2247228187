package saga

import (
	"encoding/json"
	"time"

	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/internal/engine"
)

// Status is where a saga stands.
type Status string

// Saga statuses. Completed, Compensated and CompensationFailed are
// terminal; an operator can move a CompensationFailed saga back to
// Compensating (ops.Client.RetryCompensation).
const (
	// StatusScheduled is a saga started for later (At, After): recorded,
	// with nothing run until it begins (State.Scheduled).
	StatusScheduled          Status = "scheduled"
	StatusRunning            Status = "running"
	StatusCompleted          Status = "completed"
	StatusCompensating       Status = "compensating"
	StatusCompensated        Status = "compensated"
	StatusCompensationFailed Status = "compensation_failed"
)

// Terminal reports whether no participant will act on the saga again
// without an operator.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusCompensated || s == StatusCompensationFailed
}

// StepStatus is where one step of a saga stands.
type StepStatus string

// Step statuses.
const (
	StepPending StepStatus = "pending" // not triggered yet
	StepRunning StepStatus = "running" // triggered, no outcome yet
	// StepWaiting is a step completed later (WaitsFor): its action started
	// it and its outcome comes from outside (Step.Complete or Step.Fail, a
	// domain event, a child saga's end) until WaitUntil.
	StepWaiting   StepStatus = "waiting"
	StepCompleted StepStatus = "completed" // action succeeded
	StepFailed    StepStatus = "failed"    // aborted or out of retries: it had no effect
	// StepUnknown is a compensatable step whose outcome is unknown: no
	// outcome within its timeout or the saga's deadline, out of retries
	// (an earlier attempt may have made the effect), or redelivered
	// (after a crash, say) once the saga was compensating. A crash may have
	// left its effect made but unrecorded, so it is compensated like a
	// completed step. Its compensation gets the zero output and must accept
	// that there may be nothing to undo (and should leave a mark that
	// refuses a late action).
	StepUnknown            StepStatus = "unknown"
	StepSkipped            StepStatus = "skipped"             // triggered after the saga began compensating: never run
	StepCompensating       StepStatus = "compensating"        // completed, its compensation is due
	StepCompensated        StepStatus = "compensated"         // compensation succeeded
	StepCompensationFailed StepStatus = "compensation_failed" // compensation out of retries: parked
)

// Phase names what an event of a saga's log records, or which handler a
// call is (Info.Phase).
type Phase string

// Phases of saga log events (Event.Phase).
const (
	PhaseStart             Phase = "start"       // the saga started (step "_saga")
	PhaseDone              Phase = "done"        // a step's action succeeded: its result
	PhaseFailed            Phase = "failed"      // aborted, out of retries, or an unusable input
	PhaseTimedOut          Phase = "timed-out"   // no outcome in time: compensated as unknown
	PhaseAbandoned         Phase = "abandoned"   // redelivered while compensating: compensated as unknown
	PhaseSkipped           Phase = "skipped"     // triggered while compensating: never run
	PhaseRetry             Phase = "retry"       // a failed attempt that will be retried
	PhaseCompensated       Phase = "compensated" // a compensation succeeded
	PhaseCompensationRetry Phase = "undo-retry"  // a failed compensation attempt that will be retried
	PhaseParked            Phase = "parked"      // a compensation out of retries: the saga waits for an operator
	PhaseDeadline          Phase = "deadline"    // the saga's deadline passed (step "_saga")
	PhaseResume            Phase = "resume"      // an operator's retry of a parked saga (step "_saga")
	PhaseCancelled         Phase = "cancelled"   // an operator cancelled the saga: it compensates (step "_saga")
	PhaseBegin             Phase = "begin"       // a saga started for later began: it runs (step "_saga")
	PhaseReverted          Phase = "revert"      // a completed child saga compensates, as its parent does (step "_saga")
	PhasePaused            Phase = "paused"      // an operator paused the saga: actions triggered from then on are held (step "_saga")
	PhaseUnpaused          Phase = "unpaused"    // an operator resumed a paused saga: its held steps run (step "_saga")
	PhaseHeld              Phase = "held"        // a step triggered while its saga is paused: not run until it resumes
	PhaseNoted             Phase = "noted"       // an operator's act that changes no state (a dead letter replayed; step "_saga")
)

// Phases of handler calls (Info.Phase).
const (
	PhaseAction       Phase = "action"
	PhaseCompensation Phase = "compensation"
)

// State is a saga's queryable state. Every event in the saga's log carries
// the State that results from it, so the newest event is the current state.
type State struct {
	Flow      string      `json:"flow"`
	Version   int         `json:"version"`
	ID        string      `json:"id"`
	Status    Status      `json:"status"`
	Reason    string      `json:"reason,omitempty"` // why it compensates
	Steps     []StepState `json:"steps"`
	Events    int         `json:"events"`          // length of the saga's log
	Epoch     int         `json:"epoch,omitempty"` // operator retries so far
	StartedAt time.Time   `json:"started_at"`
	UpdatedAt time.Time   `json:"updated_at"`
	EndedAt   time.Time   `json:"ended_at,omitzero"`
	Deadline  time.Time   `json:"deadline,omitzero"`
	// TraceID is the OpenTelemetry trace of the saga (32 hex digits), set
	// when it was started with tracing on: every span of its actions and
	// compensations is in it.
	TraceID string `json:"trace_id,omitempty"`
	// Scheduled is when a saga started for later (At, After) begins, or
	// began; zero for a saga that ran at once.
	Scheduled time.Time `json:"scheduled,omitzero"`
	// Parent is, for a child saga (NewChild), the saga and step that
	// started it; nil for any other saga.
	Parent *ParentRef `json:"parent,omitempty"`
	// Attrs are the saga's search attributes (Attr, ResultAttr), by name,
	// numbers in their shortest decimal form: Get reads them all from the
	// search index; Find sets those its conditions read.
	Attrs map[string]string `json:"attrs,omitempty"`
	// Paused is, for a saga an operator paused (ops.Client.PauseSaga),
	// who paused it, when and why; nil for a saga that is not paused.
	Paused *Paused `json:"paused,omitempty"`
}

// Paused is who paused a saga, when, why, and the bulk act the pause was
// part of ("" for none).
type Paused struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
	Bulk   string    `json:"bulk,omitempty"`
}

// Step returns the named step's state, or nil.
func (s *State) Step(name string) *StepState {
	for i := range s.Steps {
		if s.Steps[i].Name == name {
			return &s.Steps[i]
		}
	}
	return nil
}

// ParentRef names the saga and step that started a child saga
// (State.Parent).
type ParentRef struct {
	Flow string `json:"flow"`
	ID   string `json:"id"`
	Step string `json:"step"`
}

// String is flow/id/step.
func (p ParentRef) String() string { return p.Flow + "/" + p.ID + "/" + p.Step }

// StepState is one step's part of a saga's state.
type StepState struct {
	Name     string            `json:"name"`
	Position int               `json:"position"`
	Kind     describe.StepKind `json:"kind"`
	Status   StepStatus        `json:"status"`
	Attempts int               `json:"attempts"`
	// Error is why the step's action failed (or its last attempt did);
	// CompensationError why its compensation failed (or its last attempt
	// did). They are kept apart: a step whose action succeeded and whose
	// compensation failed has an empty Error.
	Error                string    `json:"error,omitempty"`
	CompensationError    string    `json:"compensation_error,omitempty"`
	StartedAt            time.Time `json:"started_at,omitzero"` // when the step was triggered
	EndedAt              time.Time `json:"ended_at,omitzero"`   // when its action's outcome was recorded
	CompensationAttempts int       `json:"compensation_attempts,omitempty"`
	CompensatedAt        time.Time `json:"compensated_at,omitzero"`
	// Trigger is the index in the saga's log of the event that triggered
	// the step; Done the index of its completion. 0 when not yet.
	Trigger int `json:"trigger,omitempty"`
	Done    int `json:"done,omitempty"`
	// Client.Get tells, for a running step, who has it. Taken: a runner
	// attached to the step's consumer has been handed the event that
	// triggered it, so its action is under way (or about to be retried).
	// Unserved: no runner of the saga's flow version is attached to the
	// step's consumer now, so the saga waits for a service that runs it
	// (that version) to start. Neither: runners are attached but have not
	// reached its trigger yet (it is queued behind earlier work). Waiting
	// says, in words, why a step that is not Taken waits.
	Taken    bool   `json:"taken,omitempty"`
	Unserved bool   `json:"unserved,omitempty"`
	Waiting  string `json:"waiting,omitempty"`
	// A step completed later (WaitsFor): WaitingOn is who it waits on;
	// WaitUntil when its wait times out (or, while it is running after a
	// failed attempt, when it is tried again); Token, while it waits, the
	// completion token of the attempt that waits (Step.Complete).
	WaitingOn string    `json:"waiting_on,omitempty"`
	WaitUntil time.Time `json:"wait_until,omitzero"`
	Token     string    `json:"token,omitempty"`
	// Held is a running step triggered while its saga was paused: its
	// action did not run, and runs when the saga resumes.
	Held bool `json:"held,omitempty"`
}

// Event is one event of a saga's log (Client.Timeline).
type Event struct {
	Sequence uint64          `json:"sequence"`
	Step     string          `json:"step"` // "_saga" for saga-wide events
	Phase    Phase           `json:"phase"`
	Type     string          `json:"type"` // the CloudEvents type of its payload
	Time     time.Time       `json:"time"`
	Data     json.RawMessage `json:"data,omitempty"`
	// Encrypted says the payload is sealed with a key this client was not
	// given (WithKeyRing): Data is left out.
	Encrypted bool   `json:"encrypted,omitempty"`
	State     *State `json:"state"` // the saga's state after the event
}

// String is "step:phase", the form timelines are asserted in.
func (e Event) String() string { return e.Step + ":" + string(e.Phase) }

// stateOf is the face's copy of an engine state.
func stateOf(s *engine.State) *State {
	if s == nil {
		return nil
	}
	out := &State{
		Flow: s.Flow, Version: s.Version, ID: s.ID, Status: Status(s.Status), Reason: s.Reason,
		Events: s.Events, Epoch: s.Epoch, StartedAt: s.StartedAt, UpdatedAt: s.UpdatedAt,
		EndedAt: s.EndedAt, Deadline: s.Deadline, TraceID: s.TraceID, Scheduled: s.Scheduled,
		Steps: make([]StepState, len(s.Steps)), Attrs: s.Attrs,
	}
	if p := s.Parent; p != nil {
		out.Parent = &ParentRef{Flow: p.Flow, ID: p.ID, Step: p.Step}
	}
	if p := s.Paused; p != nil {
		out.Paused = &Paused{By: p.By, At: p.At, Reason: p.Reason, Bulk: p.Bulk}
	}
	for i, st := range s.Steps {
		out.Steps[i] = StepState{
			Name: st.Name, Position: st.Position, Kind: st.Kind, Status: StepStatus(st.Status),
			Attempts: st.Attempts, Error: st.Error, CompensationError: st.CompensationError, StartedAt: st.StartedAt, EndedAt: st.EndedAt,
			CompensationAttempts: st.CompensationAttempts, CompensatedAt: st.CompensatedAt,
			Trigger: st.Trigger, Done: st.Done, Taken: st.Taken, Unserved: st.Unserved, Waiting: st.Waiting,
			WaitingOn: st.WaitingOn, WaitUntil: st.WaitUntil, Token: engine.TokenOf(s, st.Name), Held: st.Held,
		}
	}
	return out
}

func statesOf(ss []*engine.State) []*State {
	out := make([]*State, len(ss))
	for i, s := range ss {
		out[i] = stateOf(s)
	}
	return out
}

func eventOf(e engine.Event) Event {
	return Event{Sequence: e.Sequence, Step: e.Step, Phase: Phase(e.Phase), Type: e.Type, Time: e.Time, Data: e.Data, Encrypted: e.Encrypted, State: stateOf(e.State)}
}
