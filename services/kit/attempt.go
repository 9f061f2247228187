package kit

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// attemptTimeout bounds one request to the broker in Update. A request
// sent to a server as it stops (a node of a cluster lost, or restarted) is
// never answered; waiting for the caller's deadline, a step's, would fail
// the step when the connection has long moved to another server, where a
// new attempt is answered.
const attemptTimeout = 5 * time.Second

// attempt calls op with a context bounded by attemptTimeout.
func attempt[R any](ctx context.Context, op func(ctx context.Context) (R, error)) (R, error) {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	return op(actx)
}

// unanswered reports whether err is an attempt that got no answer while
// ctx still allows another: its own time ran out, or no server answered
// (a stream electing a leader).
func unanswered(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// maxUnanswered is how many unanswered attempts in Update are tried again;
// the last error is returned after that. "No responders" also says that a
// stream is gone, which no retry mends.
const maxUnanswered = 4

// retries counts an Update's unanswered attempts.
type retries int

// again reports whether to try again, after a pause, or whether ctx ended
// or the attempts ran out.
func (r *retries) again(ctx context.Context) bool {
	if *r >= maxUnanswered {
		return false
	}
	*r++
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Duration(*r) * 250 * time.Millisecond): // a leader being elected
		return true
	}
}
