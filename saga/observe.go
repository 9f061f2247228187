package saga

import (
	"context"
	"time"

	"github.com/choreo-go/choreo/saga/internal/engine"
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

// observer adapts an Observer to the engine.
type observer struct{ o Observer }

func (o observer) Handled(info engine.Info, outcome engine.Phase, took time.Duration) {
	o.o.Handled(infoOf(info), Phase(outcome), took)
}

func (o observer) Recorded(r engine.Record) {
	o.o.Recorded(Record{Flow: r.Flow, Version: r.Version, ID: r.ID, Step: r.Step, Phase: Phase(r.Phase), Status: Status(r.Status), Ended: r.Ended})
}

func (o observer) DeadLettered(flow, reason string) { o.o.DeadLettered(flow, reason) }

// WithObserver has o told what this client and its runners do (default:
// nothing is told).
func WithObserver(o Observer) Option {
	if o == nil {
		return engine.WithObserver(nil)
	}
	return engine.WithObserver(observer{o})
}

// Interceptor wraps every action and compensation the runner calls: for
// tracing, metrics, logging or injecting faults in tests. It must call
// next to run the handler, and may change the error it returns.
type Interceptor func(ctx context.Context, info Info, next func(context.Context) error) error

// WithInterceptor wraps every handler call in i; several interceptors run
// in the order given, the first outermost.
func WithInterceptor(i Interceptor) RunnerOption {
	if i == nil {
		return engine.WithInterceptor(nil)
	}
	return engine.WithInterceptor(func(ctx context.Context, info engine.Info, next func(context.Context) error) error {
		return i(ctx, infoOf(info), next)
	})
}

// WithOnRecorded calls fn after the runner appended an outcome to a saga's
// log, the durably recorded one (a step done, failed, timed out, abandoned
// or skipped, a compensation done, a saga deadline) and before it
// acknowledges the message that caused it. Retries and parked sagas are
// not outcomes here. Use it for metrics and audit; a crash inside fn is
// the one that loses the acknowledgement, so fault-injection tests hook
// here too. step is "_saga" for a deadline. fn must be quick and must not
// block.
func WithOnRecorded(fn func(st *State, step string, phase Phase)) RunnerOption {
	if fn == nil {
		return engine.WithOnRecorded(nil)
	}
	return engine.WithOnRecorded(func(st *engine.State, step string, phase engine.Phase) { fn(stateOf(st), step, Phase(phase)) })
}

// WithValidator checks every payload a step is about to take, by its
// CloudEvents type (a JSON Schema check, say). An event that fails is
// dead-lettered with the reason and its step fails, so the saga
// compensates.
func WithValidator(v func(eventType string, data []byte) error) RunnerOption {
	return engine.WithValidator(v)
}

// WithSchemas names where the JSON Schema of each event type is: the
// runner registers its flow versions in the broker with the schemas of
// their input and of each step's result, so that operator tools (choreo
// flows asyncapi) describe every message with its schema. A type schemaOf
// returns an error for is registered without one. It pairs with
// WithValidator, which checks payloads against the same schemas.
func WithSchemas(schemaOf func(eventType string) ([]byte, error)) RunnerOption {
	return engine.WithSchemas(schemaOf)
}
