package saga

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/choreo-go/choreo/saga/internal/engine"
)

// Runner runs the steps a service owns. Bind steps with Handle, then call
// Run. Every instance of a service runs the same bindings; they share the
// steps' durable consumers, so the broker spreads the work among them.
type Runner struct{ e *engine.Runner }

// NewRunner returns a runner that works through c. It returns an error
// wrapping ErrInvalidOption for a nil client or a bad option.
func NewRunner(c *Client, opts ...RunnerOption) (*Runner, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOption)
	}
	e, err := engine.NewRunner(c.e, opts...)
	if err != nil {
		return nil, err
	}
	return &Runner{e: e}, nil
}

// Handle binds step s's action and compensation in runner r. The action
// turns the step's input into its result; the compensation undoes a
// completed action, given the same input and that result. A nil
// compensation means there is nothing to undo (the step is still
// compensated: its compensation is recorded as done).
//
// The error an action returns decides what happens: nil completes the
// step; Abort(err) compensates the saga; any other error is retried with
// the step's backoff until its attempts run out, and then compensates. A
// compensation's errors are all retried; when its attempts run out the
// saga is parked as compensation_failed and the message is dead-lettered.
//
// A step in several versions of its flow (the same step value in each
// Define) is bound in each: the runner serves every one of those versions.
//
// A step completed later (WaitsFor) may have a nil action: it then waits
// as soon as it is triggered (for a completion or its event).
//
// Handle returns ErrInvalidFlow for a step that is in no flow,
// ErrInvalidOption for a nil runner or action or for a compensation of a
// pivot or retriable step (they are never compensated), and ErrBound for a
// step already bound here or a runner already running.
func Handle[In, Out any](r *Runner, s *Step[In, Out], action func(context.Context, In) (Out, error), compensate func(context.Context, In, Out) error) error {
	if r == nil {
		return fmt.Errorf("%w: nil runner", ErrInvalidOption)
	}
	var act func(ctx context.Context, data []byte) ([]byte, error)
	if action == nil && s.step().Waits() {
		// A step completed later with nothing to ask for: it waits.
		act = func(context.Context, []byte) ([]byte, error) { return nil, engine.ErrLater }
	}
	if action != nil {
		act = func(ctx context.Context, data []byte) ([]byte, error) {
			var in In
			if err := json.Unmarshal(data, &in); err != nil {
				return nil, engine.Undecodable(err)
			}
			out, err := action(ctx, in)
			if err != nil {
				return nil, err
			}
			return json.Marshal(out)
		}
	}
	var comp func(ctx context.Context, inData, outData []byte) error
	if compensate != nil {
		comp = func(ctx context.Context, inData, outData []byte) error {
			var in In
			var out Out
			if err := json.Unmarshal(inData, &in); err != nil {
				return engine.Undecodable(err)
			}
			if len(outData) > 0 { // none for a step whose outcome is unknown
				if err := json.Unmarshal(outData, &out); err != nil {
					return engine.Undecodable(err)
				}
			}
			return compensate(ctx, in, out)
		}
	}
	return r.e.Bind(s.step(), act, comp)
}

// OnEnd binds fn to every saga of flow f that reaches a terminal status:
// completed, compensated or compensation_failed (again after an operator
// retry). It runs through a durable consumer named for the flow and name,
// shared by every instance, so each end is handled once per name (at least
// once: fn must be idempotent). An error from fn is retried, but
// Abort(err), an end fn can never handle (a saga of an order it does not
// know), dead-letters the end with the error as the reason. It returns
// ErrInvalidOption for a nil flow or function or a bad name, and ErrBound
// for a name already bound or a runner already running.
func (r *Runner) OnEnd(f FlowRef, name string, fn func(ctx context.Context, st *State) error) error {
	if fn == nil {
		return fmt.Errorf("%w: nil flow or function", ErrInvalidOption)
	}
	return r.e.OnEnd(ref(f), name, func(ctx context.Context, st *engine.State) error { return fn(ctx, stateOf(st)) })
}

// Run creates the durable consumers of the bound steps and handles their
// messages until ctx ends. Then it stops receiving, waits for the handlers
// in flight (up to the drain timeout) and returns nil. Nothing is
// acknowledged that was not processed: what is left unfinished is
// redelivered, to this service's other instances or after a restart. It
// returns ErrBound when called twice, ErrUnsafeConfig for an existing
// consumer of choreo's name that would lose messages, or the broker's
// error.
func (r *Runner) Run(ctx context.Context) error { return r.e.Run(ctx) }

// Ready is closed once Run has created its consumers and is receiving.
func (r *Runner) Ready() <-chan struct{} { return r.e.Ready() }

// Consumer names a durable consumer a runner uses.
type Consumer struct {
	Stream, Name string
}

// Consumers lists the durable consumers Run creates for what is bound to
// r: to watch their pending and acknowledgement-pending counts.
func (r *Runner) Consumers() []Consumer {
	var out []Consumer
	for _, c := range r.e.Consumers() {
		out = append(out, Consumer{Stream: c.Stream, Name: c.Name})
	}
	return out
}
