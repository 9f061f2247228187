// Package wire is choreo's wire format: the subjects and headers of saga
// log events, compensation commands, timers and dead letters. It is not
// part of the public API; tests inside the module that forge messages
// import it.
//
// A saga log event is one message on
//
//	choreo.log.<flow>.<id>.v<version>.<step>.<phase>
//
// with three headers: the two compare-and-set headers over the saga's
// subjects (which also make a retried append harmless: it expects a
// sequence the log has passed), and Choreo-State, the saga's state after
// the event in a compact text form. Commands, timers and dead letters,
// which are not compare-and-set, carry a deterministic Nats-Msg-Id. Everything else (flow, saga id, version, step, phase) is
// in the subject, and the event type follows from the flow's definition.
// The version token routes a saga's events, commands and timers to the
// consumers of the flow version it started on, so that several versions
// run side by side.
package wire

import (
	"encoding/base64"
	"strconv"
	"strings"
)

// Streams.
const (
	Stream           = "CHOREO"
	TimerStream      = "CHOREO_TIMERS"
	DeadLetterStream = "CHOREO_DLQ"
)

// EventStream holds the domain events of package events (Watermill's
// messages: the payload is the event's JSON), on EventPrefix + topic.
const (
	EventStream = "CHOREO_EVENTS"
	EventPrefix = "events."
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
	// TimerKind, on a timer, says what fires: TimerDeadline, TimerExpire
	// or TimerBegin.
	TimerKind = "Choreo-Timer"
	// TraceParent, on log events and commands, is the W3C trace context
	// of the span that wrote them: only when tracing is on.
	TraceParent = "traceparent"

	DeadReason   = "Choreo-Dlq-Reason"
	DeadSubject  = "Choreo-Dlq-Subject"
	DeadSequence = "Choreo-Dlq-Sequence"
	DeadConsumer = "Choreo-Dlq-Consumer"
	DeadTime     = "Choreo-Dlq-Time"
	// DeadSize and DeadHash are the size and SHA-256 of the payload a
	// dead letter copies; it keeps only the payload's start.
	DeadSize = "Choreo-Dlq-Size"
	DeadHash = "Choreo-Dlq-Hash"
	// Key, on a message whose payload choreo sealed (a key ring is
	// given), is the id of the key that sealed it.
	Key = "Choreo-Key"
	// Attempt, on a step's timer, is the attempt of the step it belongs
	// to: a timer of an earlier attempt fires for nothing.
	Attempt = "Choreo-Attempt"
)

// Timer kinds.
const (
	TimerDeadline = "deadline" // the saga's deadline passed
	TimerExpire   = "expire"   // an ended saga's retention passed
	// TimerStep fires on a step's own timer subject (StepTimerSubject):
	// the wait of a step completed later is over, or its retry is due.
	TimerStep  = "step"
	TimerBegin = "begin" // a scheduled saga's time to begin came
)

// Phase tokens of commands.
const Undo = "undo"

// Version is the subject token of a flow version: "v" and the number.
func Version(v int) string { return "v" + strconv.Itoa(v) }

// ParseVersion reads a version token; ok is false for anything but "v"
// and a number from 1 to 1,000,000.
func ParseVersion(tok string) (v int, ok bool) {
	if len(tok) < 2 || len(tok) > 8 || tok[0] != 'v' || tok[1] == '0' {
		return 0, false
	}
	for i := 1; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return 0, false
		}
		v = v*10 + int(tok[i]-'0')
	}
	return v, v <= 1_000_000
}

// LogSubject is the subject of one saga log event.
func LogSubject(flow, id string, version int, step, phase string) string {
	return Log + flow + "." + id + "." + Version(version) + "." + step + "." + phase
}

// LogWildcard matches every event of one saga (a saga has one version).
func LogWildcard(flow, id string) string { return Log + flow + "." + id + ".>" }

// LogFilter matches the events of every saga of a flow version with step
// and phase ("*" for any).
func LogFilter(flow string, version int, step, phase string) string {
	return Log + flow + ".*." + Version(version) + "." + step + "." + phase
}

// CmdSubject is the subject of a compensation command.
func CmdSubject(flow, id string, version int, step string) string {
	return Cmd + flow + "." + id + "." + Version(version) + "." + step + "." + Undo
}

// SchedSubject holds a saga's one timer schedule.
func SchedSubject(flow, id string) string { return Sched + flow + "." + id }

// TimerSubject is where a saga's schedule fires.
func TimerSubject(flow, id string, version int) string {
	return Timer + flow + "." + id + "." + Version(version)
}

// StepSchedSubject holds the one timer schedule of a step of a saga: the
// end of its wait, or its next attempt (a step completed later).
func StepSchedSubject(flow, id, step string) string { return Sched + flow + "." + id + "." + step }

// StepTimerSubject is where a step's schedule fires: only its owner's
// consumer (WaitConsumer) reads it.
func StepTimerSubject(flow, id string, version int, step string) string {
	return TimerSubject(flow, id, version) + "." + step
}

// Tokens splits a subject into at most n tokens without allocating more
// than the result; ok is false when it does not have exactly n.
func Tokens(subject string, n int) ([]string, bool) {
	t := strings.SplitN(subject, ".", n+1)
	return t, len(t) == n
}

// Phases: the last token of a saga log subject.
const (
	PhaseStart             = "start"
	PhaseDone              = "done"
	PhaseFailed            = "failed"
	PhaseTimedOut          = "timed-out"
	PhaseAbandoned         = "abandoned"
	PhaseSkipped           = "skipped"
	PhaseRetry             = "retry"
	PhaseCompensated       = "compensated"
	PhaseCompensationRetry = "undo-retry"
	PhaseParked            = "parked"
	PhaseDeadline          = "deadline"
	PhaseResume            = "resume"
	PhaseCancelled         = "cancelled"
	PhaseWaiting           = "waiting"
	PhaseBegin             = "begin"
	PhaseReverted          = "revert"
	PhasePaused            = "paused"
	PhaseUnpaused          = "unpaused"
	PhaseHeld              = "held"
	PhaseNoted             = "noted"
)

// Token reports whether s is a name choreo accepts for a flow, a step or
// an owner: 1 to 64 characters of [A-Za-z0-9_-], starting with a letter or
// digit, so that it is one NATS subject token. (Checked on every message:
// no regular expression.)
func Token(s string) bool {
	return len(s) >= 1 && len(s) <= 64 && s[0] != '_' && s[0] != '-' && IDChars(s)
}

// IDChars reports whether s is made only of [A-Za-z0-9_-].
func IDChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// DeadLetterSubject is where writer, an identity's name (Unnamed for an
// identity without one: an admin, an unauthenticated client), dead-letters
// a message of flow: the broker lets each identity publish only under its
// own name, so the subject says who wrote a dead letter.
func DeadLetterSubject(flow, writer string) string { return Dead + flow + "." + writer }

// Unnamed stands for an identity with no name, in a subject token: no
// service's name (Token refuses a leading underscore).
const Unnamed = "_"

// InboxPrefix is the inbox prefix of an identity's connection.
func InboxPrefix(identity string) string { return "_INBOX_" + identity }

// IdentityOf is the identity a connection's inbox prefix names
// (InboxPrefix), or Unnamed.
func IdentityOf(inboxPrefix string) string {
	if name, ok := strings.CutPrefix(inboxPrefix, "_INBOX_"); ok && Token(name) {
		return name
	}
	return Unnamed
}

// DefKey is the flow registry's key of a flow version's definition.
func DefKey(flow string, version int) string { return "def." + flow + "." + Version(version) }

// FlowsBucket is the key-value bucket of choreo's flow registry.
const FlowsBucket = "CHOREO_FLOWS"

// DoConsumer names the durable consumer of a step's triggers.
func DoConsumer(flow string, version int, step string) string {
	return flow + "_" + Version(version) + "_" + step + "_do"
}

// UndoConsumer names the durable consumer of a step's compensation commands.
func UndoConsumer(flow string, version int, step string) string {
	return flow + "_" + Version(version) + "_" + step + "_undo"
}

// TimerConsumer names the durable consumer of a flow version's timers.
func TimerConsumer(flow string, version int) string {
	return flow + "_" + Version(version) + "__timers"
}

// WaitConsumer names the durable consumer of a step's own timers (a step
// completed later).
func WaitConsumer(flow string, version int, step string) string {
	return flow + "_" + Version(version) + "_" + step + "_wait"
}

// EventConsumer names the durable consumer, on the domain events stream,
// of the events that complete a step (an event wait).
func EventConsumer(flow string, version int, step string) string {
	return flow + "_" + Version(version) + "_" + step + "_on"
}

// EndConsumer names the durable consumer of an OnEnd handler of a flow.
func EndConsumer(flow, handler string) string { return flow + "__end_" + handler }

// ChildEndConsumer names the durable consumer, on the log of child flow
// child, of the ends of the child sagas that step of flow parent runs:
// its owner settles the step with them.
func ChildEndConsumer(child, parent, step string) string {
	return child + "__parent_" + parent + "_" + step
}

// The search index: two messages, with no payload, per attribute of a
// saga, in IndexStream: one found by the value,
//
//	choreo.idx.<flow>.<attr>.<value>.<id>.<source>
//
// and one found by the saga,
//
//	choreo.idx.<flow>._id.<id>.<attr>.<value>.<source>
//
// where value is the attribute's value encoded as one subject token
// (IndexValueString, IndexValueNumber) and source who computed it:
// SagaStep for an attribute of the saga's input (its starter), a step's
// name for one of that step's result (its owner). In the first the value
// comes before the saga id, so that an equality lookup names its
// subjects exactly; the second gives a saga's attributes (Get, its
// expiry) without a walk over every saga's. The subjects alone (the
// stream's subject list) say every value: no lookup reads a message. No
// attribute is named "_id" (Token refuses a leading underscore).
const (
	IndexStream = "CHOREO_INDEX"
	Index       = "choreo.idx."
)

// IndexSubject is the subject of one attribute of a saga, found by its
// value.
func IndexSubject(flow, attr, value, id, source string) string {
	return Index + flow + "." + attr + "." + value + "." + id + "." + source
}

// IndexBySaga is the token after the flow of the subjects found by saga.
const IndexBySaga = "_id"

// IndexSagaSubject is the subject of one attribute of a saga, found by
// the saga.
func IndexSagaSubject(flow, id, attr, value, source string) string {
	return Index + flow + "." + IndexBySaga + "." + id + "." + attr + "." + value + "." + source
}

// IndexValueString encodes a text value as a subject token: "s" and the
// value itself when it is made of [A-Za-z0-9-] only (what ids, codes and
// countries are), else "b" and its unpadded base64url encoding.
func IndexValueString(v string) string {
	plain := v != ""
	for i := 0; i < len(v) && plain; i++ {
		c := v[i]
		plain = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-'
	}
	if plain {
		return "s" + v
	}
	return "b" + base64.RawURLEncoding.EncodeToString([]byte(v))
}

// IndexValueNumber encodes a finite number as a subject token: "n" and
// its shortest decimal form, with "_" for the point and no "+" ("n100",
// "n-2_5", "n1e21"), which ParseIndexValue reads back exactly.
func IndexValueNumber(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	return "n" + strings.NewReplacer(".", "_", "+", "").Replace(s)
}

// ParseIndexValue reads a token IndexValueString or IndexValueNumber
// made: the value as text (a number in strconv's shortest form), and
// whether it is a number; ok is false for anything else.
func ParseIndexValue(tok string) (v string, number, ok bool) {
	if tok == "" {
		return "", false, false
	}
	switch rest := tok[1:]; tok[0] {
	case 's':
		return rest, false, rest != ""
	case 'b':
		b, err := base64.RawURLEncoding.DecodeString(rest)
		return string(b), false, err == nil
	case 'n':
		f, err := strconv.ParseFloat(strings.ReplaceAll(rest, "_", "."), 64)
		if err != nil {
			return "", false, false
		}
		return strconv.FormatFloat(f, 'g', -1, 64), true, true
	}
	return "", false, false
}
