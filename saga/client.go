package saga

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga/internal/engine"
)

// Client starts and queries sagas. It is safe for concurrent use. Make one
// with New (or Open); the caller owns the NATS connection.
type Client struct{ e *engine.Client }

// New creates or updates choreo's streams and returns a client. It returns
// an error wrapping ErrInvalidOption for a bad option, ErrUnsafeConfig when
// the existing streams would lose sagas (memory storage not asked for),
// ErrNotProvisioned when a stream is missing or differs and this identity
// may not create it, or the broker's error.
func New(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Client, error) {
	e, err := engine.New(ctx, js, opts...)
	if err != nil {
		return nil, err
	}
	return &Client{e: e}, nil
}

// Open returns a client over streams that exist already, changing nothing
// in the broker: for services and tools that only read sagas and must
// never create or reconfigure choreo's streams. It returns an error
// wrapping ErrNotProvisioned when a stream or the flow registry is missing.
func Open(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Client, error) {
	e, err := engine.Open(ctx, js, opts...)
	if err != nil {
		return nil, err
	}
	return &Client{e: e}, nil
}

// Start starts a saga of flow f with the given id and input, on f's
// version: exactly the version passed, never another one. Defining a
// version 2 beside version 1 changes nothing for code that starts
// version 1; code that wants version 2 names it. (A rolling upgrade has
// old builds name the old version and new builds the new one; see
// ServeVersions.) The saga runs to its end on that version. Starting an
// id that already exists, on any version, does nothing and returns nil, so
// Start is safe to retry. It returns ErrInvalidFlow for a nil flow,
// ErrInvalidOption for a nil client, ErrInvalidID, ErrInvalidInput for an
// input that does not encode or is over the event size limit, ErrRetired
// when the version is retired or draining (it never starts another
// version in its place), ErrStreamFull when the saga stream is near its
// limits (see access.WithStreamLimits), or the broker's error.
//
// With At or After, the saga starts later: it is recorded now with status
// StatusScheduled (Get and List show it, and when it begins), nothing runs,
// and a broker-side schedule, which no process restart loses, has a runner
// of the flow begin it then (its deadline counts from there). Cancel stops
// it before it begins: it ends compensated, with nothing run. A time not
// after now starts it at once.
func Start[In any](ctx context.Context, c *Client, f *Flow[In], id string, input In, opts ...StartOption) error {
	if f == nil || f.def == nil {
		return fmt.Errorf("%w: nil flow", ErrInvalidFlow)
	}
	if c == nil {
		return fmt.Errorf("%w: nil client", ErrInvalidOption)
	}
	data, err := json.Marshal(input)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return c.e.Start(ctx, f.def, id, data, opts...)
}

// StartOption changes how Start starts a saga: At, After.
type StartOption = engine.StartOption

// At has Start record the saga now, as scheduled, and begin it at t.
func At(t time.Time) StartOption { return engine.At(t) }

// After has Start record the saga now, as scheduled, and begin it once d
// has passed.
func After(d time.Duration) StartOption { return engine.After(d) }

// Get returns a saga's state. Each running step says who has it (see
// StepState): Taken by a runner, Unserved (no runner of the saga's flow
// version is attached to it: the saga waits for one), or queued behind
// earlier work, with a Waiting line when it is not Taken. It returns
// ErrNotFound when there is no such saga.
func (c *Client) Get(ctx context.Context, f FlowRef, id string) (*State, error) {
	st, err := c.e.Get(ctx, ref(f), id)
	return stateOf(st), err
}

// List returns the sagas of flow f whose status is one of statuses (all
// sagas when none is given), oldest first. It reads the newest events of
// every saga of the flow: use it for operators and tests, not per request
// on a large history.
func (c *Client) List(ctx context.Context, f FlowRef, statuses ...Status) ([]*State, error) {
	es := make([]engine.Status, len(statuses))
	for i, s := range statuses {
		es[i] = engine.Status(s)
	}
	sts, err := c.e.List(ctx, ref(f), es...)
	return statesOf(sts), err
}

// Timeline returns a saga's log in order. Event types are those of f's
// definition; with a Named flow, result types read "choreo.saga.done". It
// returns ErrNotFound when there is no such saga.
func (c *Client) Timeline(ctx context.Context, f FlowRef, id string) ([]Event, error) {
	evs, err := c.e.Timeline(ctx, ref(f), id)
	out := make([]Event, len(evs))
	for i, e := range evs {
		out[i] = eventOf(e)
	}
	return out, err
}

// Watch sends the state of every saga of flow f each time it changes,
// from now on, until ctx ends; then it closes the channel. A slow reader
// slows the watch, not the sagas. It returns ErrInvalidFlow for a nil flow
// or a bad name.
func (c *Client) Watch(ctx context.Context, f FlowRef) (<-chan *State, error) {
	in, err := c.e.Watch(ctx, ref(f))
	if err != nil {
		return nil, err
	}
	out := make(chan *State)
	go func() {
		defer close(out)
		for st := range in {
			select {
			case out <- stateOf(st):
			case <-ctx.Done():
				for range in { // the engine closes in once ctx ended
				}
				return
			}
		}
	}()
	return out, nil
}

// ValidID reports whether id can name a saga: 1 to 128 characters of
// [A-Za-z0-9_-].
func ValidID(id string) bool { return engine.ValidID(id) }
