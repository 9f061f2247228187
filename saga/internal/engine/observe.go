package engine

import (
	"fmt"
	"log/slog"
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

// WithObserver has o told what this client and its runners do (default:
// nothing is told).
func WithObserver(o Observer) Option {
	return func(opts *options) error {
		if o == nil {
			return fmt.Errorf("%w: nil Observer", ErrInvalidOption)
		}
		opts.observer = o
		return nil
	}
}

// observed is what a delivery knows for its log lines: the trace it
// belongs to and the handler call it is making.
type observed struct {
	trace    trace.SpanContext
	info     Info
	handling bool
}

// observe reports an event appended by this process to the observer.
func (j *journal) observe(st *State, step string, phase Phase, was Status) {
	if o := j.opts.observer; o != nil && st != nil {
		o.Recorded(Record{Flow: st.Flow, Version: st.Version, ID: st.ID, Step: step, Phase: phase, Status: st.Status,
			Ended: st.Status.Terminal() && st.Status != was})
	}
}

// recorded reports an event the delivery appended, st the state it
// leaves and was the status before: to the observer, and as one log line,
// at warn or error level for what an operator wants to know of (a failed
// attempt, an abort, a timeout, a compensation, a parked saga, a
// deadline, and whatever the verdict warns of), else at debug.
func (d *delivery) recorded(st *State, was Status, step string, v verdict) {
	d.r.j.observe(st, step, v.phase, was)
	switch v.phase {
	case PhaseRetry, PhaseCompensationRetry, PhaseFailed, PhaseTimedOut, PhaseAbandoned, PhaseCompensated, PhaseParked, PhaseDeadline:
	default:
		if v.warn == "" && !d.debug() {
			return // the hot path: a step done, nothing to log
		}
	}
	attrs := []any{"outcome", v.phase}
	if s := st.Step(step); s != nil && s.Error != "" {
		attrs = append(attrs, "err", s.Error)
	}
	if v.warn != "" {
		attrs = append(attrs, "detail", v.warn)
	}
	if v.retryIn > 0 {
		attrs = append(attrs, "in", v.retryIn)
	}
	switch v.phase {
	case PhaseRetry:
		d.log().Warn("choreo: step attempt failed, will retry", attrs...)
	case PhaseCompensationRetry:
		d.log().Warn("choreo: compensation attempt failed, will retry", attrs...)
	case PhaseFailed:
		d.log().Warn("choreo: step failed, the saga compensates", attrs...)
	case PhaseTimedOut, PhaseAbandoned:
		d.log().Warn("choreo: step outcome unknown, the saga compensates it", attrs...)
	case PhaseCompensated:
		d.log().Warn("choreo: step compensated", append(attrs, "status", st.Status)...)
	case PhaseParked:
		d.log().Error("choreo: compensation out of attempts, saga parked for an operator (Client.RetryCompensation)", attrs...)
	case PhaseDeadline:
		d.log().Warn("choreo: saga deadline passed", append(attrs, "status", st.Status)...)
	default:
		if v.warn != "" {
			d.log().Warn("choreo: "+v.warn, append(attrs, "status", st.Status)...)
		} else if d.debug() {
			d.log().Debug("choreo: recorded", append(attrs, "status", st.Status)...)
		}
	}
}

// log returns the runner's logger with what this message is about: its
// consumer and sequence, the flow, saga, step, phase and attempt (the
// handler call's once one is made), and the trace id when traced.
func (d *delivery) log() *slog.Logger {
	attrs := make([]any, 0, 16)
	attrs = append(attrs, "consumer", d.src.consumer, "seq", d.src.seq)
	switch {
	case d.obs.handling:
		i := d.obs.info
		attrs = append(attrs, "flow", i.Flow, "version", i.Version, "saga", i.ID, "step", i.Step, "phase", i.Phase, "attempt", i.Attempt)
	case d.env != nil:
		phase := string(d.env.phase)
		switch {
		case d.env.timer != "":
			phase = "timer-" + d.env.timer
		case phase == "":
			phase = string(PhaseCompensation)
		}
		attrs = append(attrs, "flow", d.env.flow, "saga", d.env.id, "step", d.env.step, "phase", phase, "attempt", d.delivered)
	default:
		attrs = append(attrs, "subject", d.src.subject, "attempt", d.delivered)
	}
	if d.obs.trace.IsValid() {
		attrs = append(attrs, "trace_id", d.obs.trace.TraceID().String())
	}
	return d.r.j.opts.logger.With(attrs...)
}

// Consumer names a durable consumer a runner uses.
type Consumer struct {
	Stream, Name string
}

// Consumers lists the durable consumers Run creates for what is bound
// to r: to watch their pending and acknowledgement-pending counts.
func (r *Runner) Consumers() []Consumer {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Consumer
	for _, s := range r.specs() {
		out = append(out, Consumer{Stream: s.stream, Name: s.name})
	}
	return out
}
