// Package wire is choreo's wire format: the subjects and headers of saga
// log events, compensation commands, timers and dead letters. It is not
// part of the public API; tests inside the module that forge messages
// import it.
//
// A saga log event is one message on
//
//	choreo.log.<flow>.<id>.<step>.<phase>
//
// with three headers: the two compare-and-set headers over the saga's
// subjects (which also make a retried append harmless: it expects a
// sequence the log has passed), and Choreo-State, the saga's state after
// the event in a compact text form. Commands, timers and dead letters,
// which are not compare-and-set, carry a deterministic Nats-Msg-Id. Everything else (flow, saga id, step, phase) is in
// the subject, and the event type follows from the flow's definition.
package wire

import "strings"

// Streams.
const (
	Stream           = "CHOREO"
	TimerStream      = "CHOREO_TIMERS"
	DeadLetterStream = "CHOREO_DLQ"
)

// Subject prefixes.
const (
	Log   = "choreo.log."
	Cmd   = "choreo.cmd."
	Sched = "choreo.sched."
	Timer = "choreo.timer."
	Dead  = "choreo.dlq."
)

// SagaStep is the step token of saga-wide events (start, deadline, resume).
const SagaStep = "_saga"

// Headers choreo writes. Log events carry only State (and the broker's
// Nats-* headers); commands carry Epoch and After; timers carry Timer.
const (
	State = "Choreo-State"
	// Epoch, on a compensation command, is the operator retry it belongs to.
	Epoch = "Choreo-Epoch"
	// After, on a compensation command, is the sequence of the saga log
	// event that made it due: its reader reads a state at least as new.
	After = "Choreo-After"
	// TimerKind, on a timer, says what fires: TimerDeadline or TimerExpire.
	TimerKind = "Choreo-Timer"

	DeadReason   = "Choreo-Dlq-Reason"
	DeadSubject  = "Choreo-Dlq-Subject"
	DeadSequence = "Choreo-Dlq-Sequence"
	DeadConsumer = "Choreo-Dlq-Consumer"
	DeadTime     = "Choreo-Dlq-Time"
)

// Timer kinds.
const (
	TimerDeadline = "deadline" // the saga's deadline passed
	TimerExpire   = "expire"   // an ended saga's retention passed
)

// Phase tokens of commands.
const Undo = "undo"

// LogSubject is the subject of one saga log event.
func LogSubject(flow, id, step, phase string) string {
	return Log + flow + "." + id + "." + step + "." + phase
}

// LogWildcard matches every event of one saga.
func LogWildcard(flow, id string) string { return Log + flow + "." + id + ".>" }

// CmdSubject is the subject of a compensation command.
func CmdSubject(flow, id, step string) string { return Cmd + flow + "." + id + "." + step + "." + Undo }

// SchedSubject holds a saga's one timer schedule.
func SchedSubject(flow, id string) string { return Sched + flow + "." + id }

// TimerSubject is where a saga's schedule fires.
func TimerSubject(flow, id string) string { return Timer + flow + "." + id }

// Tokens splits a subject into at most n tokens without allocating more
// than the result; ok is false when it does not have exactly n.
func Tokens(subject string, n int) ([]string, bool) {
	t := strings.SplitN(subject, ".", n+1)
	return t, len(t) == n
}
