package saga

import (
	"time"

	"github.com/choreo-go/choreo/saga/internal/engine"
)

// RunnerOption configures a Runner (NewRunner). Each one checks its own
// value.
type RunnerOption = engine.RunnerOption

// ServeVersions limits the versions of the named flow that the runner
// serves: Handle binds a step only in these versions of it (by default, in
// every version the step is in). It is how one build runs as an old
// instance, a new one, or both, through a rolling upgrade: an instance
// with only version 1 never takes version 2's work. Which version a build
// starts is the one it passes to Start (exactly that one). Name
// the versions of a flow in one ServeVersions.
func ServeVersions(flow string, versions ...int) RunnerOption {
	return engine.ServeVersions(flow, versions...)
}

// WithConcurrency sets how many messages each of the runner's consumers
// handles at once (default 128). It is also the consumer's MaxAckPending, so
// the broker never hands this runner more than it is working on.
func WithConcurrency(n int) RunnerOption { return engine.WithConcurrency(n) }

// WithAckWait sets how long the broker waits for a handler before it
// redelivers its message to another instance (default 10s). Handlers that
// run longer are kept alive with progress acknowledgements every third of
// it (from the message's arrival to its acknowledgement), so this bounds
// how soon a crashed instance's work moves elsewhere: a step's timeout
// counts from its start, so keep it well above the ack wait, or a crash
// mid-step times the step out before another instance can run it.
func WithAckWait(d time.Duration) RunnerOption { return engine.WithAckWait(d) }

// WithDrainTimeout sets how long Run waits, once its context ends, for the
// handlers in flight (default 30s). Handlers still running then have their
// context cancelled and their messages are left for redelivery; Run waits
// 5s more for them to return, then returns without them.
func WithDrainTimeout(d time.Duration) RunnerOption { return engine.WithDrainTimeout(d) }
