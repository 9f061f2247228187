package engine

import (
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Observer is told what clients and runners do, for metrics. Its methods
// are called on the hot path, from many goroutines at once: they must be
// quick, safe for concurrent use, and must not block.
type Observer interface {
	// Handled reports a handler call, an action or a compensation
	// (info.Phase), that took took, and what the runner decided of it:
	// the phase of the event it records (PhaseDone, PhaseRetry,
	// PhaseFailed, PhaseTimedOut, PhaseCompensated, PhaseCompensationRetry,
	// PhaseParked).
	Handled(info Info, outcome Phase, took time.Duration)
	// Recorded reports an event appended to a saga's log by this process:
	// a start (step "_saga", PhaseStart), a step's outcome, a retry, a
	// compensation, a deadline, and the saga's status after it.
	Recorded(r Record)
	// DeadLettered reports a message this process copied to the dead
	// letters.
	DeadLettered(flow, reason string)
}

// Record is an event appended to a saga's log, as an Observer sees it.
type Record struct {
	Flow    string
	Version int
	ID      string
	Step    string // "_saga" for a start, a deadline or a resume
	Phase   Phase
	Status  Status // the saga's status after the event
	// Ended says the event ended the saga: its status became terminal
	// (completed, compensated, or compensation_failed when parked).
	Ended bool
}

// observed is what a delivery knows for its log lines: the trace it
// belongs to and the handler call it is making.
type observed struct {
	trace    trace.SpanContext
	info     Info
	handling bool
}

// Info describes the step run a handler is called for.
type Info struct {
	Flow    string
	Version int    // the flow version the saga runs on
	ID      string // the saga's id
	Step    string
	Phase   Phase // PhaseAction or PhaseCompensation
	Attempt int   // 1 for the first
}

// IdempotencyKey is the same for every attempt and every redelivery of
// this step's action (or compensation) in this saga, and differs between
// the two. Pass it to the systems the handler changes so that a retried
// effect happens once.
func (i Info) IdempotencyKey() string {
	if i.Phase == PhaseCompensation {
		return i.Flow + "/" + i.ID + "/" + i.Step + "/compensation"
	}
	return i.Flow + "/" + i.ID + "/" + i.Step
}
