package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/choreo-go/choreo/internal/wire"
)

// Phase names what happened in a saga, or which handler is called.
//
// The events of a saga's log (Event.Phase, WithOnRecorded) have the phases
// PhaseStart to PhaseExpired; a handler call (Info.Phase) is PhaseAction or
// PhaseCompensation.
type Phase string

// Phases of saga log events.
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
	PhaseWaiting           Phase = "waiting"     // a step's action started it; its outcome comes later
	PhaseBegin             Phase = "begin"       // a scheduled saga's time came: it runs (step "_saga")
	PhaseReverted          Phase = "revert"      // a completed child saga compensates: its parent does (step "_saga")
	PhasePaused            Phase = "paused"      // an operator paused the saga: actions triggered from now on wait (step "_saga")
	PhaseUnpaused          Phase = "unpaused"    // an operator resumed a paused saga: its held steps run (step "_saga")
	PhaseHeld              Phase = "held"        // a step triggered while its saga is paused: not run until the saga resumes
	PhaseNoted             Phase = "noted"       // an operator's act that changes nothing in the state (a dead letter replayed; step "_saga")
)

// Phases of handler calls (Info.Phase).
const (
	PhaseAction       Phase = "action"
	PhaseCompensation Phase = "compensation"
)

// Status is where a saga stands.
type Status string

// Saga statuses. Completed, Compensated and CompensationFailed are terminal;
// an operator can move a CompensationFailed saga back to Compensating with
// Client.RetryCompensation.
const (
	// StatusScheduled is a saga started for later (At, After): recorded,
	// with nothing triggered until its begin (State.Scheduled).
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
	// it, and its outcome comes from outside (a completion, an event, a
	// child saga's end) until WaitUntil, when its wait times out.
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

// StepState is one step's part of a saga's state.
type StepState struct {
	Name     string     `json:"name"`
	Position int        `json:"position"`
	Kind     StepKind   `json:"kind"`
	Status   StepStatus `json:"status"`
	Attempts int        `json:"attempts"`
	// Error is why the step's action failed (or its last attempt did);
	// CompensationError why its compensation did. They are kept apart: a
	// step whose action succeeded and whose compensation failed has no
	// Error.
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
	// WaitUntil is, for a waiting step, when its wait times out; for a
	// step completed later that failed an attempt, when it is tried
	// again. WaitingOn is who it waits on, as the flow declares it
	// (WaitsFor).
	WaitUntil time.Time `json:"wait_until,omitzero"`
	WaitingOn string    `json:"waiting_on,omitempty"`
	// A query tells, for a running step, who has it. Taken: a runner
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
	// Held is a running step triggered while its saga was paused: its
	// action did not run, and runs when the saga resumes.
	Held bool `json:"held,omitempty"`
}

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
	// Scheduled is when a saga started for later begins (or began): set
	// on a saga started with At or After, zero on one that ran at once.
	Scheduled time.Time `json:"scheduled,omitzero"`
	// Parent is, for a child saga (a step of another flow runs it), the
	// saga and step that started it; nil for any other saga.
	Parent *ParentRef `json:"parent,omitempty"`
	// Attrs are the saga's search attributes (a flow's saga.Attr), by
	// name, numbers in their shortest decimal form. They are not part of
	// the log's state: Get reads them from the search index, and Find
	// sets those its conditions read.
	Attrs map[string]string `json:"attrs,omitempty"`
	// Paused is, for a saga an operator paused (Client.PauseSaga), who
	// paused it, when and why: the actions triggered meanwhile wait
	// (StepState.Held). nil for a saga that is not paused.
	Paused *Audit `json:"paused,omitempty"`

	// earlier holds the stream sequences of the saga's earlier events, in
	// order: what an expiry deletes one by one (a purge makes the broker
	// recount every consumer's pending messages over the whole stream).
	// Past maxEarlier events (a step retried for hours) the list stops
	// and overflow says so: the expiry purges instead.
	earlier  []uint64
	overflow bool
}

// Audit is who did an operator's act on a saga, when, why, and the bulk
// act it was part of (Client.Bulk): the payload of the operator's events
// in a saga's log (cancelled, resume, paused, unpaused, noted), and of
// State.Paused.
type Audit struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
	Bulk   string    `json:"bulk,omitempty"`
}

// ParentRef names the saga and step that started a child saga.
type ParentRef struct {
	Flow string `json:"flow"`
	ID   string `json:"id"`
	Step string `json:"step"`
}

// String is flow/id/step.
func (p ParentRef) String() string { return p.Flow + "/" + p.ID + "/" + p.Step }

// maxEarlier bounds the sequences a state lists, so that a saga with many
// retries does not carry a growing header on every event.
const maxEarlier = 64

// follow notes that the event at sequence seq precedes this state's.
func (s *State) follow(seq uint64) {
	if s.overflow || len(s.earlier) >= maxEarlier {
		s.earlier, s.overflow = nil, true
		return
	}
	s.earlier = append(s.earlier, seq)
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

func (s *State) clone() *State {
	c := *s
	c.Steps = slices.Clone(s.Steps)
	c.earlier = slices.Clone(s.earlier)
	if s.Paused != nil {
		p := *s.Paused
		c.Paused = &p
	}
	return &c
}

// view returns the state as readers see it: completed steps whose
// compensation is due show as compensating.
func (s *State) view() *State {
	v := s.clone()
	for _, name := range s.dueUndo() {
		v.Step(name).Status = StepCompensating
	}
	return v
}

// errNoop says a transition does not apply to the state it was offered: it
// already happened, or the state moved past it.
var errNoop = errors.New("transition does not apply")

func newState(f *flowDef, id string, now time.Time) *State {
	s := &State{
		Flow: f.name, Version: f.version, ID: id, Status: StatusRunning,
		Events: 1, StartedAt: now, UpdatedAt: now,
	}
	if f.deadline > 0 {
		s.Deadline = now.Add(f.deadline)
	}
	for _, d := range f.steps {
		s.Steps = append(s.Steps, StepState{Name: d.name, Position: d.pos, Kind: d.kind, Status: StepPending})
	}
	s.settle(now)
	return s
}

// newScheduled is the state of a saga of f recorded at now to begin at
// at: nothing is triggered, and its deadline is set when it begins.
func newScheduled(f *flowDef, id string, now, at time.Time) *State {
	s := &State{
		Flow: f.name, Version: f.version, ID: id, Status: StatusScheduled,
		Events: 1, StartedAt: now, UpdatedAt: now, Scheduled: at,
	}
	for _, d := range f.steps {
		s.Steps = append(s.Steps, StepState{Name: d.name, Position: d.pos, Kind: d.kind, Status: StepPending})
	}
	return s
}

// commence runs a scheduled saga at now, with the deadline its flow gives it
// from there (zero: none). A saga that is not scheduled (it began, or was
// cancelled) and a begin before its time do not apply.
func (s *State) commence(now, deadline time.Time) error {
	if s.Status != StatusScheduled || now.Before(s.Scheduled) {
		return errNoop
	}
	s.Status, s.Deadline = StatusRunning, deadline
	return nil
}

func (s *State) running(name string) (*StepState, error) {
	st := s.Step(name)
	if st == nil {
		return nil, fmt.Errorf("saga %s has no step %q", s.ID, name)
	}
	if st.Status != StepRunning {
		return nil, errNoop
	}
	return st, nil
}

// unsettled returns the named step if it is running or waiting: an
// outcome may be recorded for it.
func (s *State) unsettled(name string) (*StepState, error) {
	st := s.Step(name)
	if st == nil {
		return nil, fmt.Errorf("saga %s has no step %q", s.ID, name)
	}
	if st.Status != StepRunning && st.Status != StepWaiting {
		return nil, errNoop
	}
	return st, nil
}

// complete records a step's success. While compensating, it records a late
// result, which settle and dueUndo then compensate.
func (s *State) complete(name string, attempts int, now time.Time) error {
	st, err := s.unsettled(name)
	if err != nil {
		return err
	}
	st.Status, st.Attempts, st.EndedAt, st.Done, st.Error, st.WaitUntil, st.Held = StepCompleted, attempts, now, s.Events, "", time.Time{}, false
	return nil
}

// startWait records that a step's action started it and its outcome comes
// later, until the given time.
func (s *State) startWait(name string, attempts int, until time.Time, on string) error {
	st, err := s.unsettled(name)
	if err != nil {
		return err
	}
	if st.Attempts > attempts || (st.Status == StepWaiting && st.Attempts == attempts) {
		return errNoop
	}
	st.Status, st.Attempts, st.WaitUntil, st.WaitingOn, st.Error, st.Held = StepWaiting, attempts, until, on, "", false
	return nil
}

// retryWait records a failed attempt of a step completed later: it runs
// again at the given time, when its timer fires.
func (s *State) retryWait(name string, attempts int, reason string, at time.Time) error {
	st, err := s.unsettled(name)
	if err != nil {
		return err
	}
	if st.Attempts > attempts || (st.Status == StepRunning && st.Attempts == attempts) {
		return errNoop
	}
	st.Status, st.Attempts, st.Error, st.WaitUntil = StepRunning, attempts, reason, at
	return nil
}

// fail records a step that will not succeed; a running saga starts
// compensating.
func (s *State) fail(name string, attempts int, reason string, now time.Time) error {
	st, err := s.unsettled(name)
	if err != nil {
		return err
	}
	st.Status, st.Attempts, st.Error, st.EndedAt, st.WaitUntil, st.Held = StepFailed, attempts, reason, now, time.Time{}, false
	s.compensate(fmt.Sprintf("step %s: %s", name, reason))
	return nil
}

// timeOut records a step with no outcome in time: it is compensated.
func (s *State) timeOut(name string, attempts int, reason string, now time.Time) error {
	st, err := s.unsettled(name)
	if err != nil {
		return err
	}
	st.Status, st.Attempts, st.Error, st.EndedAt, st.WaitUntil, st.Held = StepUnknown, attempts, reason, now, time.Time{}, false
	s.compensate(fmt.Sprintf("step %s: %s", name, reason))
	return nil
}

// abandon records a step whose earlier delivery may have run when the saga
// is compensating: it is not run again, but compensated.
func (s *State) abandon(name string, now time.Time) error {
	st, err := s.running(name)
	if err != nil {
		return err
	}
	if s.Status == StatusRunning {
		return errNoop
	}
	st.Status, st.EndedAt, st.Error, st.Held = StepUnknown, now, "abandoned after a redelivery: it may have run", false
	return nil
}

// skip records a triggered step that was not run because the saga is
// compensating.
func (s *State) skip(name string, now time.Time) error {
	st, err := s.running(name)
	if err != nil {
		return err
	}
	if s.Status == StatusRunning {
		return errNoop
	}
	st.Status, st.EndedAt, st.Held = StepSkipped, now, false
	return nil
}

// retrying records a failed attempt that will be retried.
func (s *State) retrying(name string, attempts int, reason string) error {
	st, err := s.unsettled(name)
	if err != nil {
		return err
	}
	if st.Attempts >= attempts {
		return errNoop
	}
	st.Attempts, st.Error = attempts, reason
	return nil
}

func (s *State) compensate(reason string) {
	if (s.Status == StatusRunning || s.Status == StatusScheduled) && !s.pivoted() {
		s.Status, s.Reason = StatusCompensating, reason
	}
}

// expire applies the saga deadline.
func (s *State) expire(now time.Time) error {
	if s.Status != StatusRunning || s.pivoted() || s.Deadline.IsZero() || now.Before(s.Deadline) {
		return errNoop
	}
	s.compensate("saga deadline exceeded")
	return nil
}

// cancel is an operator's stop of a running saga (Client.Cancel, or the
// retirement of its flow version): it compensates with the reason. A
// scheduled saga that has not begun ends compensated: nothing ran.
func (s *State) cancel(reason string) error {
	switch {
	case s.Status != StatusRunning && s.Status != StatusScheduled:
		return fmt.Errorf("%w: it is %s", ErrNotRunning, s.Status)
	case s.pivoted():
		return fmt.Errorf("%w: its pivot ran, so it can only go forward", ErrNotRunning)
	}
	s.compensate(reason)
	return nil
}

// pause is an operator's hold on a running (or scheduled) saga: the
// actions triggered from now on are held (hold) until unpause. It
// returns ErrNotRunning for a saga that ended or compensates, and does
// not apply to one paused already.
func (s *State) pause(a *Audit) error {
	switch {
	case a == nil:
		return errors.New("a pause names who paused and why")
	case s.Status != StatusRunning && s.Status != StatusScheduled:
		return fmt.Errorf("%w: it is %s", ErrNotRunning, s.Status)
	case s.Paused != nil:
		return errNoop
	}
	s.Paused = a
	return nil
}

// unpause takes an operator's pause back: the held steps run again, each
// with its timeout counted afresh from now. It returns ErrNotPaused for a
// saga that is not paused.
func (s *State) unpause(now time.Time) error {
	if s.Paused == nil {
		return ErrNotPaused
	}
	s.Paused = nil
	for i := range s.Steps {
		if st := &s.Steps[i]; st.Held && st.Status == StepRunning {
			st.StartedAt = now
		}
	}
	return nil
}

// hold records that a running step's trigger came while the saga is
// paused: its action did not run. errUnpaused when the saga is no longer
// paused (the trigger is judged again).
func (s *State) hold(name string) error {
	st, err := s.running(name)
	if err != nil {
		return err
	}
	if s.Paused == nil {
		return errUnpaused
	}
	if st.Held {
		return errNoop
	}
	st.Held = true
	return nil
}

// errUnpaused says a saga was resumed while a trigger was being held.
var errUnpaused = errors.New("the saga is no longer paused")

// revert turns a completed child saga back to compensating, because its
// parent compensates: its completed steps are compensated in reverse, by
// their own services, and it ends compensated. Only a saga with a parent
// may be reverted, and only one whose steps are all compensatable (no
// pivot ran: Define refuses a compensatable step running a child flow
// that has one).
func (s *State) revert() error {
	switch {
	case s.Parent == nil:
		return fmt.Errorf("%w: saga %s has no parent saga", ErrNotRunning, s.ID)
	case s.Status != StatusCompleted:
		return fmt.Errorf("%w: it is %s, not completed", ErrNotRunning, s.Status)
	}
	for _, st := range s.Steps {
		if st.Kind != CompensatableStep {
			return fmt.Errorf("%w: its step %s is %s", ErrNotRunning, st.Name, st.Kind)
		}
	}
	s.Status, s.EndedAt = StatusCompensating, time.Time{}
	s.Reason = "its parent saga " + s.Parent.Flow + "/" + s.Parent.ID + " compensates"
	return nil
}

// pivoted reports whether the saga reached its pivot: once the pivot is
// triggered the saga can only go forward.
func (s *State) pivoted() bool {
	for _, st := range s.Steps {
		if st.Kind == PivotStep && (st.Status == StepCompleted || st.Status == StepRunning || st.Status == StepWaiting) {
			return true
		}
	}
	return false
}

func (s *State) due(name string) (*StepState, error) {
	if !slices.Contains(s.dueUndo(), name) {
		return nil, errNoop
	}
	return s.Step(name), nil
}

// compensated records a finished compensation.
func (s *State) compensated(name string, attempts int, now time.Time) error {
	st, err := s.due(name)
	if err != nil {
		return err
	}
	st.Status, st.CompensationAttempts, st.CompensatedAt, st.CompensationError = StepCompensated, attempts, now, ""
	return nil
}

// compRetrying records a failed compensation attempt that will be retried.
func (s *State) compRetrying(name string, attempts int, reason string) error {
	st, err := s.due(name)
	if err != nil {
		return err
	}
	if st.CompensationAttempts >= attempts {
		return errNoop
	}
	st.CompensationAttempts, st.CompensationError = attempts, reason
	return nil
}

// park records a compensation out of retries: the saga stops as
// compensation_failed until an operator retries it.
func (s *State) park(name string, attempts int, reason string, now time.Time) error {
	st, err := s.due(name)
	if err != nil {
		return err
	}
	st.Status, st.CompensationAttempts, st.CompensationError = StepCompensationFailed, attempts, reason
	s.Status, s.EndedAt = StatusCompensationFailed, now
	return nil
}

// retryParked is the operator's retry of a compensation_failed saga.
func (s *State) retryParked() error {
	if s.Status != StatusCompensationFailed {
		return ErrNotParked
	}
	s.Status, s.EndedAt = StatusCompensating, time.Time{}
	s.Epoch++
	for i := range s.Steps {
		if st := &s.Steps[i]; st.Status == StepCompensationFailed {
			st.Status, st.CompensationAttempts = StepCompleted, 0
		}
	}
	return nil
}

// settle triggers the next position when one completes, and moves the saga
// to its terminal status when nothing is left to do.
func (s *State) settle(now time.Time) {
	s.UpdatedAt = now
	if s.Status != StatusRunning && s.Status != StatusScheduled {
		s.Paused = nil // a pause holds actions: nothing is left to hold
	}
	switch s.Status {
	case StatusRunning:
		last := -1
		for i := range s.Steps {
			last = max(last, s.Steps[i].Position)
		}
		for p := 0; p <= last; p++ {
			all := true
			for i := range s.Steps {
				st := &s.Steps[i]
				if st.Position != p {
					continue
				}
				if st.Status == StepPending {
					st.Status, st.StartedAt, st.Trigger = StepRunning, now, s.Events
				}
				all = all && st.Status == StepCompleted
			}
			if !all {
				return
			}
		}
		s.Status, s.EndedAt = StatusCompleted, now
	case StatusCompensating:
		for i := range s.Steps {
			// A step held by a pause never ran, unless an earlier attempt
			// did (a retry): then it is compensated as unknown.
			if st := &s.Steps[i]; st.Held && st.Status == StepRunning {
				st.Held, st.EndedAt = false, now
				if st.Attempts == 0 {
					st.Status = StepSkipped
				} else {
					st.Status, st.Error = StepUnknown, "held by a pause after a failed attempt: the saga compensates"
				}
			}
		}
		for i := range s.Steps {
			// A wait ends when the saga compensates: whatever the step
			// started may have had its effect, so it is compensated, and a
			// completion that comes later is refused as late.
			if st := &s.Steps[i]; st.Status == StepWaiting || (st.Status == StepRunning && !st.WaitUntil.IsZero()) {
				st.Status, st.EndedAt, st.WaitUntil = StepUnknown, now, time.Time{}
				st.Error = "its wait ended: the saga compensates"
			}
		}
		for _, st := range s.Steps {
			if st.Status == StepRunning || (undoable(st.Status) && st.Kind == CompensatableStep) {
				return
			}
		}
		s.Status, s.EndedAt = StatusCompensated, now
	}
}

// dueUndo lists the steps whose compensation may run now: the completed,
// compensatable members of the last position that has any, once no member
// of that or a later position is still running. Members of one position
// (a parallel group) are compensated together.
func (s *State) dueUndo() []string {
	if s.Status != StatusCompensating {
		return nil
	}
	last := -1
	for _, st := range s.Steps {
		last = max(last, st.Position)
	}
	for p := last; p >= 0; p-- {
		var due []string
		for _, st := range s.Steps {
			if st.Position != p {
				continue
			}
			if st.Status == StepRunning {
				return nil
			}
			if undoable(st.Status) && st.Kind == CompensatableStep {
				due = append(due, st.Name)
			}
		}
		if len(due) > 0 {
			return due
		}
	}
	return nil
}

// undoable reports whether a step in this status may have had its effect.
func undoable(s StepStatus) bool { return s == StepCompleted || s == StepUnknown }

// transition is a change to a saga's state at time now.
type transition func(s *State, now time.Time) error

// typeOf is the event type choreo appends for a log event of step and
// phase ("" for a step the flow does not have).
func (f *flowDef) typeOf(step string, phase Phase) string {
	switch {
	case step == wire.SagaStep && phase == PhaseStart:
		return f.inputType
	case phase == PhaseDone:
		if d := f.byName[step]; d != nil {
			return d.eventType
		}
		return ""
	}
	return "choreo.saga." + string(phase)
}

// Event is one entry of a saga's log.
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

// replayPause is what a reader makes of a pause's events (check.go): the
// pause and the resume are an operator's, the hold the step owner's; a
// noted act changes nothing but the log's length.
func replayPause(next *State, phase Phase, step string, claim *State, t time.Time) error {
	switch phase {
	case PhasePaused:
		if claim.Paused == nil {
			return errors.New("a pause names who paused and why")
		}
		p := *claim.Paused
		return next.pause(&p)
	case PhaseUnpaused:
		return next.unpause(t)
	case PhaseHeld:
		return next.hold(step)
	case PhaseNoted:
		if step != wire.SagaStep {
			return errors.New("an operator's note is on the saga")
		}
		return nil
	}
	return fmt.Errorf("phase %s is not a pause's", phase)
}
