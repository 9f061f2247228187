package kit

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Update tries again after an attempt nobody answered, while its caller's
// context allows; any other error is the caller's.
func TestUnanswered(t *testing.T) {
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		want bool
	}{
		{live, nil, false},
		{live, context.DeadlineExceeded, true},
		{live, fmt.Errorf("get: %w", nats.ErrTimeout), true},
		{live, nats.ErrNoResponders, true},
		{live, jetstream.ErrNoStreamResponse, true},
		{live, jetstream.ErrKeyNotFound, false},
		{live, errors.New("permission denied"), false},
		{done, context.DeadlineExceeded, false},
	} {
		if got := unanswered(tc.ctx, tc.err); got != tc.want {
			t.Errorf("unanswered(ctx err %v, %v) = %v, want %v", tc.ctx.Err(), tc.err, got, tc.want)
		}
	}
}
