package saga

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/internal/engine"
)

// Step is one step of a flow: its action turns an In into an Out. Declare
// steps with NewStep, put them in a flow with Define, and give them an
// action (and compensation) with Handle in the service that owns them.
type Step[In, Out any] struct{ def *engine.StepDef }

// NewStep declares a step. The name must be 1 to 64 characters of
// [A-Za-z0-9_-] not starting with '_' or '-'; Define reports a bad name or
// option.
func NewStep[In, Out any](name string, opts ...StepOption) *Step[In, Out] {
	return &Step[In, Out]{def: engine.NewStep(name, reflect.TypeFor[In](), reflect.TypeFor[Out](), opts...)}
}

// Name returns the step's name.
func (s *Step[In, Out]) Name() string {
	if s == nil {
		return ""
	}
	return s.def.Name()
}

func (s *Step[In, Out]) item() engine.Item { return s.step() }

func (s *Step[In, Out]) step() *engine.StepDef {
	if s == nil {
		return nil
	}
	return s.def
}

// StepOption configures a step (NewStep). Each one checks its own value;
// Define reports the first error.
type StepOption = engine.StepOption

// Owner names the service that runs the step (its action and its
// compensation). Permissions, diagrams and the operator tools derive from
// it, so declare it on every step of a shared flow.
func Owner(service string) StepOption { return engine.Owner(service) }

// Undo names the step's compensation in the domain's words ("refund" for a
// charge), for diagrams and the operator tools. Only compensatable steps
// have one; Define refuses it on a pivot or retriable step.
func Undo(name string) StepOption { return engine.Undo(name) }

// Pivot marks the step as the saga's point of no return. A pivot has no
// compensation: Handle refuses one with ErrInvalidOption.
func Pivot() StepOption { return engine.Pivot() }

// Retriable marks a step after the pivot: retried until it succeeds, never
// compensated; Abort from it is treated as a plain error. Handle refuses a
// compensation for it with ErrInvalidOption.
func Retriable() StepOption { return engine.Retriable() }

// RetryPolicy bounds the retries of an action or a compensation. Its zero
// value means the defaults: 5 attempts for an action and 25 for a
// compensation, backoff from 100ms doubling up to 5s (30s for
// compensations).
type RetryPolicy struct {
	MaxAttempts    int           // attempts in all, the first one included
	InitialBackoff time.Duration // wait after the first failure
	MaxBackoff     time.Duration // the cap the doubling stops at
}

func (p RetryPolicy) engine() engine.RetryPolicy {
	return engine.RetryPolicy{MaxAttempts: p.MaxAttempts, InitialBackoff: p.InitialBackoff, MaxBackoff: p.MaxBackoff}
}

// WithRetry sets the action's retry policy.
func WithRetry(p RetryPolicy) StepOption { return engine.WithRetry(p.engine()) }

// WithCompensationRetry sets the compensation's retry policy. A
// compensation that fails MaxAttempts times parks the saga as
// compensation_failed.
func WithCompensationRetry(p RetryPolicy) StepOption {
	return engine.WithCompensationRetry(p.engine())
}

// WithTimeout bounds the step, retries included, from the moment it is
// triggered. When it passes, the action's context is cancelled, the step is
// recorded unknown and the saga compensates, this step included: with no
// outcome in time (a crash after the effect, say) its effect is unknown, so
// its compensation runs with the zero output and must accept that there
// may be nothing to undo. A result the action still returns later is
// recorded and compensated too. Retriable and pivot steps ignore it.
func WithTimeout(d time.Duration) StepOption { return engine.WithTimeout(d) }

// WaitsFor declares a step completed later: its action may start the step
// and return Later, and the outcome then comes from outside, within
// timeout (minutes to days), from party ("customer", "carrier": who it
// waits on, shown by Get, the CLI and the console). Whoever holds the
// completion token (CompletionToken), in a process with the step owner's
// identity, reports it with Step.Complete or Step.Fail; or a domain event
// does (CompletesOn).
//
// The timeout is a broker-side timer, like the saga's deadline: it fires
// with every process gone. When it passes, the step is run again while its
// retries last (WithRetry), and then a compensatable step is compensated
// (its outcome is unknown), a pivot fails, and a retriable step keeps
// being tried and is reported by doctor. When the saga compensates while a
// step waits (its deadline, a cancel), the wait ends: the step is
// compensated, and a completion that comes later gets ErrCompensated.
func WaitsFor(party string, timeout time.Duration) StepOption {
	return engine.WaitsFor(party, timeout)
}

// CompletesOn declares that a step completed later (WaitsFor) completes
// when a domain event on topic (package events) names its saga: the
// event's JSON field holds the saga's id, and the event's payload is the
// step's result (so the step's Out is the event's type). The owner's
// runner reads the topic through a durable consumer of its own; an event
// that comes before the step waits is held until it does (or its saga
// ends). The step may still have an action (to ask for the event: book
// the carrier) that returns Later, or none (Handle with a nil action).
func CompletesOn(topic, field string) StepOption { return engine.CompletesOn(topic, field) }

// WithEventType sets the CloudEvents type of the step's result event. The
// default is the result type's Go name.
func WithEventType(t string) StepOption { return engine.WithEventType(t) }

// InputFrom makes the step's input the result of s, an earlier step of
// the same flow, instead of the result of the step just before it. Define
// refuses the flow when s is not in it before the step, or when s's result
// is not the step's input type. The step after this one still takes this
// one's result, as ever: a step inserted between flight and hotel leaves
// hotel the flight's result when hotel is declared with InputFrom(flight).
// The step's compensation gets the same input.
func InputFrom(s AnyStep) StepOption {
	if s == nil {
		return engine.InputFrom(nil)
	}
	return engine.InputFrom(s.step())
}

// FlowInput makes the step's input the flow's input (what its sagas start
// with), instead of the result of the step just before it. Define checks
// the type.
func FlowInput() StepOption { return engine.FlowInput() }

// Item is a member of a flow definition: a step, a Parallel group, a
// Deadline or StartedBy.
type Item interface{ item() engine.Item }

// AnyStep is any *Step, whatever its payload types: the members of a
// Parallel group.
type AnyStep interface {
	Item
	Name() string
	step() *engine.StepDef
}

type item struct{ it engine.Item }

func (i item) item() engine.Item { return i.it }

// Parallel groups steps that run at the same time; the next step starts
// when all of them have completed. Every member takes the same input as a
// single step in its place would (unless it names its own: InputFrom,
// FlowInput). The step after a group takes the flow's input, or a
// member's result with InputFrom (all of them are available through
// ResultOf).
func Parallel(steps ...AnyStep) Item {
	defs := make([]*engine.StepDef, len(steps))
	for i, s := range steps {
		if s != nil {
			defs[i] = s.step()
		}
	}
	return item{engine.Parallel(defs...)}
}

// Deadline bounds the whole saga: when it passes before the saga completes
// (and before its pivot completed), the saga compensates. The deadline is a
// broker-side timer (a JetStream message schedule): it fires even if every
// process that took part in the saga is gone.
func Deadline(d time.Duration) Item { return item{engine.Deadline(d)} }

// StartedBy names the services that start the flow's sagas (Start). Like
// Owner on a step, it is what permissions derive from: only these
// services' identities may append a saga's start.
func StartedBy(services ...string) Item { return item{engine.StartedBy(services...)} }

// Flow is a named, versioned list of steps whose sagas start with an In. It
// is shared code: every participant compiles the same definition and runs
// only its own steps. Make one with Define.
type Flow[In any] struct{ def *engine.FlowDef }

// Define checks and builds a flow whose sagas start with an In. Items are
// steps, Parallel groups, at most one Deadline and StartedBy, in order. The
// first position's steps take In; after a single step, the next takes that
// step's result; after a group, the flow's In again. A step declared with
// InputFrom(s) takes earlier step s's result instead, and one declared with
// FlowInput the flow's In; the step after it still takes its result. It
// returns an error wrapping ErrInvalidFlow (or ErrInvalidOption) when the
// flow cannot run: a bad or duplicate name, a nil step, types that do not
// chain (or do not match what InputFrom or FlowInput names), InputFrom
// naming a step that is not earlier in the flow, a pivot inside a group or
// not before every retriable step, a compensatable step after the pivot,
// or a step that already belongs to another flow.
//
// A step value may be reused in another version of the same flow (not in
// another flow): Handle then binds its handlers in every version. Versions
// of one flow defined in a process must agree on the steps they share: the
// same input and result types and the same kind.
func Define[In any](name string, version int, items ...Item) (*Flow[In], error) {
	its := make([]engine.Item, len(items))
	for i, it := range items {
		if it != nil {
			its[i] = it.item()
		}
	}
	def, err := engine.Define(name, version, reflect.TypeFor[In](), its...)
	if err != nil {
		return nil, err
	}
	return &Flow[In]{def: def}, nil
}

// MustDefine is Define that panics on error, for package-level flow
// variables whose definition is fixed at compile time.
func MustDefine[In any](name string, version int, items ...Item) *Flow[In] {
	f, err := Define[In](name, version, items...)
	if err != nil {
		panic(err)
	}
	return f
}

// Name returns the flow's name.
func (f *Flow[In]) Name() string { return f.def.Name() }

// Version returns the flow's version.
func (f *Flow[In]) Version() int { return f.def.Version() }

// Info describes the flow version as declared (and as runners register
// it): its steps, owners, kinds and event types. Package describe draws
// it; package access derives permissions from it.
func (f *Flow[In]) Describe() describe.Flow { return f.def.Describe() }

func (f *Flow[In]) ref() engine.FlowRef {
	if f == nil || f.def == nil {
		return nil
	}
	return f.def
}

// FlowRef names a flow in queries: every *Flow is one, and Named makes one
// from a flow's name alone.
type FlowRef interface {
	Name() string
	ref() engine.FlowRef
}

// Named refers to a flow by its name, for queries (Get, List, Timeline,
// Watch) where only the name is at hand, as in a command-line tool. Prefer
// the *Flow itself: a misspelt name finds nothing.
func Named(name string) FlowRef { return named(name) }

type named string

func (n named) Name() string        { return string(n) }
func (n named) ref() engine.FlowRef { return engine.Named(string(n)) }

// ref converts f for the engine (nil for a nil flow).
func ref(f FlowRef) engine.FlowRef {
	if f == nil {
		return nil
	}
	return f.ref()
}

// ResultOf returns the result step s recorded in this saga, from within
// one of its handlers. It returns ErrNotFound if s has not completed.
func ResultOf[In, Out any](ctx context.Context, s *Step[In, Out]) (Out, error) {
	var v Out
	data, info, err := engine.ResultData(ctx, s.Name())
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("saga: result of %s in %s/%s: %w", s.Name(), info.Flow, info.ID, err)
	}
	return v, nil
}
