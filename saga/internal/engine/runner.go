package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/choreo-go/choreo/internal/wire"
)

// binding is a step with its handlers, working on encoded payloads.
type binding struct {
	def        *stepDef
	action     func(ctx context.Context, in []byte) ([]byte, error)
	compensate func(ctx context.Context, in, out []byte) error // nil: nothing to undo
}

// Runner runs the steps a service owns. Bind steps with Handle, then call
// Run. Every instance of a service runs the same bindings; they share the
// steps' durable consumers, so the broker spreads the work among them.
type Runner struct {
	c     *Client
	j     *journal
	o     runnerOptions
	ready chan struct{}

	quit chan struct{} // closed when Run returns: its workers stop

	mu       sync.Mutex
	bindings []*binding
	ends     []endBinding
	children []childEnd // the ends of the child sagas of steps bound with BindChild
	started  bool
	stopping bool
	inflight sync.WaitGroup
	outage   bool // a consumer is gone; logged once until all are back
}

// NewRunner returns a runner that works through c. It returns an error
// wrapping ErrInvalidOption for a nil client or a bad option.
func NewRunner(c *Client, opts ...RunnerOption) (*Runner, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOption)
	}
	o := runnerOptions{concurrency: 128, ackWait: 10 * time.Second, drain: 30 * time.Second}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Runner{c: c, j: c.j, o: o, ready: make(chan struct{}), quit: make(chan struct{})}, nil
}

// Handle binds step s's action and compensation in runner r. The action
// turns the step's input into its result; the compensation undoes a
// completed action, given the same input and that result. A nil
// compensation means there is nothing to undo (the step is still
// compensated: its compensation is recorded as done).
//
// The error an action returns decides what happens: nil completes the
// step; Abort(err) compensates the saga; any other error is retried with the
// step's backoff until its attempts run out, and then compensates. A
// compensation's errors are all retried; when its attempts run out the saga
// is parked as compensation_failed and the message is dead-lettered.
//
// A step in several versions of its flow (the same step value in each
// Define) is bound in each: the runner serves every one of those versions.
//
// Handle returns ErrInvalidFlow for a step that is in no flow,
// ErrInvalidOption for a nil action or for a compensation of a pivot or
// retriable step (they are never compensated), and ErrBound for a step
// already bound here or a runner already running.
func (r *Runner) Bind(tmpl *StepDef, act func(ctx context.Context, data []byte) ([]byte, error), comp func(ctx context.Context, inData, outData []byte) error) error {
	if !tmpl.Bound() {
		return fmt.Errorf("%w: step is not part of a defined flow", ErrInvalidFlow)
	}
	if act == nil {
		return fmt.Errorf("%w: step %s: nil action", ErrInvalidOption, tmpl.name)
	}
	if comp != nil && tmpl.kind != CompensatableStep {
		return fmt.Errorf("%w: step %s is %s: it is never compensated", ErrInvalidOption, tmpl.name, tmpl.kind)
	}
	if tmpl.child != nil {
		return fmt.Errorf("%w: step %s runs child flow %s: bind it with HandleChild", ErrInvalidOption, tmpl.name, tmpl.child.name)
	}
	return r.bind(tmpl, func(*stepDef) *binding { return &binding{action: act, compensate: comp} })
}

// bind binds tmpl in each version of its flow the runner serves, with the
// handlers mk makes for that version's step.
func (r *Runner) bind(tmpl *StepDef, mk func(d *stepDef) *binding) error {
	if t := tmpl.timeout; t > 0 && t < 2*r.o.ackWait {
		r.j.opts.logger.Warn("choreo: step timeout is under twice the ack wait: a crash mid-step may time the step out before another instance runs it",
			"step", tmpl.name, "timeout", t, "ack_wait", r.o.ackWait)
	}
	// One binding per version the step is in (the newest definition of a
	// version defined twice).
	var uses []*stepDef
	for _, d := range tmpl.uses {
		uses = slices.DeleteFunc(uses, func(o *stepDef) bool { return o.flow.version == d.flow.version })
		if vs, ok := r.o.serve[d.flow.name]; !ok || slices.Contains(vs, d.flow.version) {
			uses = append(uses, d)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return fmt.Errorf("%w: runner already running", ErrBound)
	}
	for _, o := range r.bindings {
		for _, d := range uses {
			if o.def.flow.name == d.flow.name && o.def.flow.version == d.flow.version && o.def.name == d.name {
				return fmt.Errorf("%w: %s v%d/%s", ErrBound, d.flow.name, d.flow.version, d.name)
			}
		}
	}
	for _, d := range uses {
		r.j.define(d.flow)
		b := mk(d)
		b.def = d
		r.bindings = append(r.bindings, b)
	}
	return nil
}

// childEnd is a consumer, on the log of flow child, of the ends of the
// child sagas that step tmpl of flow parent runs (children.go).
type childEnd struct {
	child        *flowDef
	parent, step string
	tmpl         *stepDef
}

type endBinding struct {
	flow string
	name string
	fn   func(context.Context, *State) error
}

// OnEnd binds fn to every saga of flow f that reaches a terminal status:
// completed, compensated or compensation_failed (again after an operator
// retry). It runs through a durable consumer named for the flow and name,
// shared by every instance, so each end is handled once per name (at least
// once: fn must be idempotent). An error from fn is retried, but
// saga.Abort(err), an end fn can never handle (a saga of an order it does
// not know), dead-letters the end with the error as the reason. It returns
// ErrInvalidOption for a nil flow or function or a bad name, and ErrBound
// for a name already bound or a runner already running.
func (r *Runner) OnEnd(f FlowRef, handler string, fn func(ctx context.Context, st *State) error) error {
	if f == nil || fn == nil {
		return fmt.Errorf("%w: nil flow or function", ErrInvalidOption)
	}
	if !wire.Token(handler) || !wire.Token(flowName(f)) {
		return fmt.Errorf("%w: name %q must be 1-64 characters of [A-Za-z0-9_-]", ErrInvalidOption, handler)
	}
	r.j.defineRef(f)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return fmt.Errorf("%w: runner already running", ErrBound)
	}
	for _, e := range r.ends {
		if e.flow == flowName(f) && e.name == handler {
			return fmt.Errorf("%w: OnEnd %s/%s", ErrBound, e.flow, handler)
		}
	}
	r.ends = append(r.ends, endBinding{flow: flowName(f), name: handler, fn: fn})
	return nil
}

// Ready is closed once Run has created its consumers and is receiving.
func (r *Runner) Ready() <-chan struct{} { return r.ready }
