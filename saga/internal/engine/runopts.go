package engine

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/choreo-go/choreo/internal/wire"
)

// RunnerOption configures a Runner. Each one checks its own value.
type RunnerOption func(*runnerOptions) error

type runnerOptions struct {
	concurrency  int
	ackWait      time.Duration
	drain        time.Duration
	interceptors []Interceptor
	validate     func(eventType string, data []byte) error
	schemaOf     func(eventType string) ([]byte, error)
	onRecorded   []func(st *State, step string, phase Phase)
	serve        map[string][]int // flow name -> the versions Handle binds (ServeVersions)
}

// ServeVersions limits the versions of the named flow that the runner
// serves: Handle binds a step only in these versions of it (by default, in
// every version the step is in). It is how one build runs as an old
// instance, a new one, or both, through a rolling upgrade: an instance
// with only version 1 never takes version 2's work. Which version a build
// starts is the one it passes to Start (exactly that one). Name
// the versions of a flow in one ServeVersions.
func ServeVersions(flow string, versions ...int) RunnerOption {
	return func(o *runnerOptions) error {
		if !wire.Token(flow) || len(versions) == 0 {
			return fmt.Errorf("%w: ServeVersions needs a flow name and at least one version", ErrInvalidOption)
		}
		for _, v := range versions {
			if v < 1 {
				return fmt.Errorf("%w: flow %s: version %d", ErrInvalidOption, flow, v)
			}
		}
		if o.serve == nil {
			o.serve = map[string][]int{}
		}
		o.serve[flow] = slices.Clone(versions)
		return nil
	}
}

// WithOnRecorded observes outcomes: it calls fn each time the runner has
// durably recorded one (a step done, failed, timed out, abandoned or
// skipped, a compensation done, a saga deadline) and before it
// acknowledges the message that caused it. Retries and parked sagas are
// not outcomes here. Use it for metrics and audit; a crash inside fn is
// the one that loses the acknowledgement, so fault-injection tests hook
// here too. step is "_saga" for a deadline. fn must be quick and must not
// block.
func WithOnRecorded(fn func(st *State, step string, phase Phase)) RunnerOption {
	return func(o *runnerOptions) error {
		if fn == nil {
			return fmt.Errorf("%w: nil OnRecorded hook", ErrInvalidOption)
		}
		o.onRecorded = append(o.onRecorded, fn)
		return nil
	}
}

// WithValidator checks every payload a step is about to take, by its
// CloudEvents type (a JSON Schema check, say). An event that fails is
// dead-lettered with the reason and its step fails, so the saga
// compensates.
func WithValidator(v func(eventType string, data []byte) error) RunnerOption {
	return func(o *runnerOptions) error {
		if v == nil {
			return fmt.Errorf("%w: nil validator", ErrInvalidOption)
		}
		o.validate = v
		return nil
	}
}

// WithSchemas names where the JSON Schema of each event type is: the
// runner registers its flow versions in the broker with the schemas of
// their input and of each step's result, so that operator tools (choreo
// flows asyncapi) describe every message with its schema. A type schemaOf
// returns an error for is registered without one. It pairs with
// WithValidator, which checks payloads against the same schemas.
func WithSchemas(schemaOf func(eventType string) ([]byte, error)) RunnerOption {
	return func(o *runnerOptions) error {
		if schemaOf == nil {
			return fmt.Errorf("%w: nil schema lookup", ErrInvalidOption)
		}
		o.schemaOf = schemaOf
		return nil
	}
}

// Interceptor wraps every action and compensation the runner calls: for
// tracing, metrics, logging or injecting faults in tests. It must call next
// to run the handler, and may change the error it returns.
type Interceptor func(ctx context.Context, info Info, next func(context.Context) error) error

// WithInterceptor adds an interceptor; the first added is the outermost.
func WithInterceptor(i Interceptor) RunnerOption {
	return func(o *runnerOptions) error {
		if i == nil {
			return fmt.Errorf("%w: nil interceptor", ErrInvalidOption)
		}
		o.interceptors = append(o.interceptors, i)
		return nil
	}
}

// WithConcurrency sets how many messages each of the runner's consumers
// handles at once (default 128). It is also the consumer's MaxAckPending, so
// the broker never hands this runner more than it is working on.
func WithConcurrency(n int) RunnerOption {
	return func(o *runnerOptions) error {
		if n < 1 || n > 10000 {
			return fmt.Errorf("%w: concurrency must be 1 to 10000, got %d", ErrInvalidOption, n)
		}
		o.concurrency = n
		return nil
	}
}

// WithAckWait sets how long the broker waits for a handler before it
// redelivers its message to another instance (default 10s). Handlers that
// run longer are kept alive with progress acknowledgements every third of
// it (from the message's arrival to its acknowledgement), so this bounds
// how soon a crashed instance's work moves elsewhere: a step's timeout
// counts from its start, so keep it well above the ack wait, or a crash
// mid-step times the step out before another instance can run it.
func WithAckWait(d time.Duration) RunnerOption {
	return func(o *runnerOptions) error {
		if d < 100*time.Millisecond {
			return fmt.Errorf("%w: ack wait must be at least 100ms, got %v", ErrInvalidOption, d)
		}
		o.ackWait = d
		return nil
	}
}

// WithDrainTimeout sets how long Run waits, once its context ends, for the
// handlers in flight (default 30s). Handlers still running then have their
// context cancelled and their messages are left for redelivery; Run waits
// 5s more for them to return, then returns without them.
func WithDrainTimeout(d time.Duration) RunnerOption {
	return func(o *runnerOptions) error {
		if d < 0 {
			return fmt.Errorf("%w: negative drain timeout", ErrInvalidOption)
		}
		o.drain = d
		return nil
	}
}
