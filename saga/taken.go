package saga

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// Taken reports, for every running step of saga id of flow f, whether a
// runner has taken the event that triggered it: a runner consumes the
// step now and the broker has handed it that event, so its action is
// under way (or about to be retried). false means the step waits: no
// runner consumes it (none ever did, or those that did are stopped), or
// those that do have not reached its trigger yet. Steps that are not
// running are not in the map. It returns ErrNotFound when there is no
// such saga.
func (c *Client) Taken(ctx context.Context, f FlowRef, id string) (map[string]bool, error) {
	if !valid(f, id) {
		return nil, ErrNotFound
	}
	c.j.defineRef(f)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	st, seq, err := c.j.load(ctx, name(f), id, 0)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, s := range st.Steps {
		if s.Status != StepRunning {
			continue
		}
		// The stream sequence of the trigger: the newest event's, or an
		// earlier one's that the state lists (0: not known).
		var trigger uint64
		switch {
		case s.Trigger == st.Events:
			trigger = seq
		case !st.overflow && len(st.earlier) == st.Events-1 && s.Trigger >= 1 && s.Trigger <= len(st.earlier):
			trigger = st.earlier[s.Trigger-1]
		}
		cons, err := c.j.js.Consumer(ctx, wire.Stream, doConsumer(st.Flow, st.Version, s.Name))
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			out[s.Name] = false
			continue
		}
		if err != nil {
			return nil, err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return nil, err
		}
		// A runner that consumes keeps pull requests waiting at the broker,
		// or holds messages it has not acknowledged yet.
		live := info.NumWaiting > 0 || info.NumAckPending > 0
		out[s.Name] = live && (trigger == 0 || info.Delivered.Stream >= trigger)
	}
	return out, nil
}
