// Package ops is the operator's side of choreo: what a person on call does
// to flows and sagas that are running, without writing Go. It lists the
// flow versions runners registered, retires and reinstates versions,
// cancels a saga, retries a parked compensation, reads, replays and purges
// dead letters, pauses and resumes a flow version, a step or a saga
// (pause.go), acts on every saga a Filter selects with an audit trail
// (bulk.go), counts where sagas stand per step, and diagnoses what is
// wrong now. The command line cmd/choreo and the web console
// (saga/console) are built on it.
//
// An operator works with names, as typed at a prompt: a flow is named by
// its name (and a version by its number), never by a compiled definition,
// so these tools work against any running system. Acts that change a saga
// (Cancel, RetryCompensation) need an identity that may append saga events
// of its own: the admin's (access.Permissions gives services no such
// right).
package ops

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/internal/engine"
)

// Errors of the operator's acts, beside saga's (saga.ErrNotFound,
// saga.ErrInvalidFlow, saga.ErrInvalidOption). Test with errors.Is.
var (
	// ErrNotParked is returned by RetryCompensation for a saga that is not
	// in the compensation_failed state.
	ErrNotParked = engine.ErrNotParked
	// ErrNotRunning is returned by Cancel for a saga that is not running,
	// or that ran its pivot (it can only go forward).
	ErrNotRunning = engine.ErrNotRunning
	// ErrNotReplayable is returned by ReplayDeadLetter for a dead letter
	// that cannot be processed now, with the reason.
	ErrNotReplayable = engine.ErrNotReplayable
)

// Client is an operator's handle on a running system. It is safe for
// concurrent use. Make one with Open; the caller owns the connection.
type Client struct{ e *engine.Client }

// Open returns an operator's client over streams that exist already,
// changing nothing in the broker (as saga.Open). It returns an error
// wrapping saga.ErrNotProvisioned when a stream or the flow registry is
// missing.
func Open(ctx context.Context, js jetstream.JetStream, opts ...saga.Option) (*Client, error) {
	e, err := engine.Open(ctx, js, opts...)
	if err != nil {
		return nil, err
	}
	return &Client{e: e}, nil
}

// Flows lists the flow versions runners registered, each as the runner
// defined it (with its schemas when the runner was given saga.WithSchemas),
// by name and version. A registry entry that is not a definition a runner
// makes (any participant of a flow may write its key) is left out, and
// logged.
func (c *Client) Flows(ctx context.Context) ([]describe.Flow, error) { return c.e.Flows(ctx) }

// Cancel is an operator's stop of a running saga: it compensates, with the
// reason, on the runners of its version. A scheduled saga (saga.At,
// saga.After) that has not begun ends compensated at once, nothing run,
// and its begin does nothing. It returns saga.ErrNotFound,
// saga.ErrInvalidOption for an empty reason, or ErrNotRunning for a saga
// that ended, compensates already, or ran its pivot (it can only go
// forward).
func (c *Client) Cancel(ctx context.Context, flow, id, reason string) error {
	return c.e.Cancel(ctx, engine.Named(flow), id, reason)
}

// RetryCompensation is the operator's retry of a saga parked as
// compensation_failed: its failed compensations run again with a fresh
// retry budget. It returns saga.ErrNotFound or ErrNotParked.
func (c *Client) RetryCompensation(ctx context.Context, flow, id string) error {
	return c.e.RetryCompensation(ctx, engine.Named(flow), id)
}

// Diagnose says what is wrong now: steps whose sagas wait because no
// runner of their version is attached, consumers far behind, sagas past
// their deadline and still running, parked sagas, a stream near its
// limits. It reads every saga of every registered flow (as saga's List
// does).
func (c *Client) Diagnose(ctx context.Context, o DiagnoseOptions) ([]Finding, error) {
	fs, err := c.e.Diagnose(ctx, engine.DiagnoseOptions(o))
	out := make([]Finding, len(fs))
	for i, f := range fs {
		out[i] = Finding(f)
	}
	return out, err
}

// Finding is one thing Diagnose found wrong.
type Finding struct {
	Kind   string `json:"kind"` // unserved, behind, overdue, parked, paused, limits
	Flow   string `json:"flow,omitempty"`
	What   string `json:"what"`   // what is wrong, in a line
	Advice string `json:"advice"` // what to do about it
	// Waiting is, for an unserved step, how long the oldest of the sagas
	// there has waited for it (since the step was triggered).
	Waiting time.Duration `json:"waiting,omitempty"`
}

// DiagnoseOptions are Diagnose's thresholds; zero values take defaults.
type DiagnoseOptions struct {
	Behind  uint64        // a consumer with more messages pending than this is behind (default 1000)
	Overdue time.Duration // a running saga this far past its deadline, or a scheduled one past its begin, is stuck (default 1m)
	Full    float64       // a stream this full (0-1) is near its limits (default 0.8)
	// Idle is how long a saga may wait at a step whose consumer has no
	// pull waiting and nothing in a runner's hands (and has delivered
	// nothing for as long) before the step is reported unserved (default
	// 30s): a runner restarting, or between two pulls, is not a finding.
	// A consumer that does not exist is reported at once.
	Idle time.Duration
}

// StepCounts counts, per step, where the sagas of version version of flow
// stand. It reads the newest event of every saga of the flow: an
// operator's call (a console polls it), not one per request. It returns
// saga.ErrInvalidFlow for a bad flow name or version, and saga.ErrNotFound
// for a version no runner registered and no saga ran on.
func (c *Client) StepCounts(ctx context.Context, flow string, version int) (*FlowCounts, error) {
	fc, err := c.e.StepCounts(ctx, engine.Named(flow), version)
	if err != nil {
		return nil, err
	}
	out := &FlowCounts{Flow: fc.Flow, Version: fc.Version, Sagas: sagas(fc.Sagas), Steps: make([]StepCount, len(fc.Steps))}
	for i, s := range fc.Steps {
		out.Steps[i] = StepCount(s)
	}
	return out, nil
}

// StepCount says how many sagas of a flow version stand where at one
// step: what an operator's drawing of the flow overlays on the step.
type StepCount struct {
	Step string `json:"step"`
	// Running counts the sagas whose step is triggered, with no outcome
	// yet, and a runner of the version attached to it; Unserved those whose
	// step no runner of the version serves now (saga.StepState's
	// Unserved): they wait for a service to start rather than for one to
	// finish.
	Running  int `json:"running"`
	Unserved int `json:"unserved"`
	// Waiting counts the steps completed later that wait on the outside
	// world (a customer, a carrier, a child saga), or for their next
	// attempt.
	Waiting int `json:"waiting"`
	// Completed, Failed and Unknown count the step's action outcomes not
	// yet undone.
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Unknown   int `json:"unknown"`
	// Compensating counts compensations due or running; Compensated those
	// done; Parked those out of retries (the saga is compensation_failed).
	Compensating int `json:"compensating"`
	Compensated  int `json:"compensated"`
	Parked       int `json:"parked"`
}

// FlowCounts counts the sagas of one flow version: by status, and per
// step (StepCount).
type FlowCounts struct {
	Flow    string              `json:"flow"`
	Version int                 `json:"version"`
	Sagas   map[saga.Status]int `json:"sagas"`
	// Steps are in the order of the definition: the registered one when a
	// runner registered the version, else the order the sagas' states list
	// them.
	Steps []StepCount `json:"steps"`
}

func sagas(m map[engine.Status]int) map[saga.Status]int {
	out := make(map[saga.Status]int, len(m))
	for k, v := range m {
		out[saga.Status(k)] = v
	}
	return out
}
