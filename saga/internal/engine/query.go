package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// name returns the name of the flow f refers to.
func flowName(f FlowRef) string {
	n, _ := f.flowRef()
	return n
}

// valid reports whether f and id can name a saga.
func validRef(f FlowRef, id string) bool {
	return f != nil && ValidID(id) && wire.Token(flowName(f))
}

// Get returns a saga's state. Each running step says who has it (see
// StepState): Taken by a runner, Unserved (no runner of the saga's flow
// version is attached to it: the saga waits for one), or queued behind
// earlier work, with a Waiting line when it is not Taken. It returns
// ErrNotFound when there is no such saga.
func (c *Client) Get(ctx context.Context, f FlowRef, id string) (*State, error) {
	if !validRef(f, id) {
		return nil, ErrNotFound
	}
	c.j.defineRef(f)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	st, seq, err := c.j.load(ctx, flowName(f), id, 0)
	if err != nil {
		return nil, err
	}
	v := openState(c.opts.ring, st.view())
	for i := range v.Steps {
		switch s := &v.Steps[i]; {
		case s.Status == StepWaiting:
			s.Waiting = fmt.Sprintf("waiting on %s until %s", s.WaitingOn, s.WaitUntil.Format(time.RFC3339))
		case s.Status == StepRunning && !s.WaitUntil.IsZero():
			s.Waiting = fmt.Sprintf("waiting on %s: tried again at %s", s.WaitingOn, s.WaitUntil.Format(time.RFC3339))
		case s.Status == StepRunning && s.Held && st.Paused != nil:
			s.Waiting = fmt.Sprintf("held: the saga is paused by %s since %s: %s", st.Paused.By, st.Paused.At.Format(time.RFC3339), st.Paused.Reason)
		case s.Status == StepRunning && s.Held:
			s.Waiting = "held by a pause: the saga resumed, and the step runs again"
		case s.Status == StepRunning:
			c.whoHas(ctx, st, seq, s)
		}
	}
	c.withAttrs(ctx, v)
	return v, nil
}

// whoHas sets Taken, Unserved and Waiting on s, a running step of st,
// whose newest event has the stream sequence seq. A broker error leaves
// them unset: it says nothing.
func (c *Client) whoHas(ctx context.Context, st *State, seq uint64, s *StepState) {
	name := wire.DoConsumer(st.Flow, st.Version, s.Name)
	unserved := func() {
		s.Unserved = true
		s.Waiting = fmt.Sprintf("waiting for a runner of %s v%d to serve step %s (none is attached to its consumer)", st.Flow, st.Version, s.Name)
	}
	cons, err := c.j.js.Consumer(ctx, wire.Stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		unserved()
		return
	}
	if err != nil {
		return
	}
	ci := cons.CachedInfo()
	if ci.Paused {
		s.Waiting = fmt.Sprintf("paused: step %s of %s v%d is paused", s.Name, st.Flow, st.Version)
		if p, ok, err := c.stepPaused(ctx, st.Flow, st.Version, s.Name); err == nil && ok {
			s.Waiting += fmt.Sprintf(" by %s since %s: %s", p.By, p.At.Format(time.RFC3339), p.Reason)
		}
		return
	}
	// A runner that consumes keeps pull requests waiting at the broker,
	// or holds messages it has not acknowledged yet.
	if ci.NumWaiting == 0 && ci.NumAckPending == 0 {
		unserved()
		return
	}
	c.attached.Store(name, time.Now())
	// The stream sequence of the trigger: the newest event's, or an
	// earlier one's that the state lists (0: not known).
	var trigger uint64
	switch {
	case s.Trigger == st.Events:
		trigger = seq
	case !st.overflow && len(st.earlier) == st.Events-1 && s.Trigger >= 1 && s.Trigger <= len(st.earlier):
		trigger = st.earlier[s.Trigger-1]
	}
	if trigger == 0 || ci.Delivered.Stream >= trigger {
		s.Taken = true
		return
	}
	s.Waiting = fmt.Sprintf("queued: the runners of %s v%d step %s have not reached it yet (%d messages pending)", st.Flow, st.Version, s.Name, ci.NumPending)
}

// served reports whether a runner is attached to the consumer of a step's
// action of a flow version: the consumer exists and has a pull request
// waiting or messages in a runner's hands. A runner that stopped leaves
// its pull requests behind until they expire (30s). What was seen less
// than 2s ago is not asked again; a broker error counts as served: it says
// nothing.
func (c *Client) served(ctx context.Context, flow string, version int, step string) bool {
	name := wire.DoConsumer(flow, version, step)
	if at, ok := c.attached.Load(name); ok && time.Since(at.(time.Time)) < 2*time.Second {
		return true
	}
	cons, err := c.j.js.Consumer(ctx, wire.Stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false
	}
	if err != nil {
		return true
	}
	if ci := cons.CachedInfo(); ci.NumWaiting == 0 && ci.NumAckPending == 0 {
		return false
	}
	c.attached.Store(name, time.Now())
	return true
}

// List returns the sagas of flow f whose status is one of statuses (all
// sagas when none is given), oldest first. It reads the newest events of
// every saga of the flow: use it for operators and tests, not per request on
// a large history.
func (c *Client) List(ctx context.Context, f FlowRef, statuses ...Status) ([]*State, error) {
	if f == nil || !wire.Token(flowName(f)) {
		return nil, nil
	}
	c.j.defineRef(f)
	flow := flowName(f)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	end, err := c.j.logEnd(ctx)
	if err != nil {
		return nil, fmt.Errorf("saga: list %s: %w", flow, err)
	}
	// The newest event on each subject, then, in log order, the newest
	// of each saga that stands.
	last := map[string]logMsg{}
	if _, err := c.j.readLog(ctx, wire.Log+flow+".*.*.*.*", 1, end, func(m logMsg) { last[m.subject] = m }); err != nil {
		return nil, fmt.Errorf("saga: list %s: %w", flow, err)
	}
	msgs := slices.SortedFunc(maps.Values(last), func(a, b logMsg) int { return cmp.Compare(a.seq, b.seq) })
	latest := map[string]*State{}
	for _, m := range msgs {
		env, err := parseEnvelope(m.subject, m.header, m.data, 1<<30)
		if err != nil || rogue(m.header, env, 1) != "" || !c.j.vouched(ctx, env, m.header, m.seq) {
			continue // what Get would quarantine does not stand for a saga
		}
		latest[env.id] = env.state
	}
	var out []*State
	for _, st := range latest {
		if len(statuses) == 0 || slices.Contains(statuses, st.Status) {
			out = append(out, openState(c.opts.ring, st.view()))
		}
	}
	slices.SortFunc(out, func(a, b *State) int { return a.StartedAt.Compare(b.StartedAt) })
	return out, nil
}

// Timeline returns a saga's log in order. Event types are those of f's
// definition; with a Named flow, result types read "choreo.saga.done". It
// returns ErrNotFound when there is no such saga.
func (c *Client) Timeline(ctx context.Context, f FlowRef, id string) ([]Event, error) {
	if !validRef(f, id) {
		return nil, ErrNotFound
	}
	c.j.defineRef(f)
	_, def := f.flowRef()
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	end, err := c.j.logEnd(ctx)
	if err != nil {
		return nil, fmt.Errorf("saga: timeline %s/%s: %w", flowName(f), id, err)
	}
	var out []Event
	_, err = c.j.readLog(ctx, wire.LogWildcard(flowName(f), id), 1, end, func(m logMsg) {
		env, err := parseEnvelope(m.subject, m.header, m.data, 1<<30)
		if err != nil || rogue(m.header, env, 1) != "" || !c.j.vouched(ctx, env, m.header, m.seq) {
			return // forged: dead-lettered when the saga is read
		}
		e := Event{Sequence: m.seq, Step: env.step, Phase: env.phase, Time: env.state.UpdatedAt, State: openState(c.opts.ring, env.state)}
		if def != nil {
			e.Type = def.typeOf(env.step, env.phase)
		} else {
			e.Type = (&flowDef{}).typeOf("", env.phase)
		}
		if len(m.data) > 0 {
			if data, err := openData(c.opts.ring, m.header, m.subject, m.data); err != nil {
				e.Encrypted = true
			} else {
				e.Data = slices.Clone(data)
			}
		}
		out = append(out, e)
	})
	if err != nil {
		return nil, fmt.Errorf("saga: timeline %s/%s: %w", flowName(f), id, err)
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}

// Watch sends the state of every saga of flow f each time it changes, from
// now on, until ctx ends; then it closes the channel. A slow reader slows
// the watch, not the sagas.
func (c *Client) Watch(ctx context.Context, f FlowRef) (<-chan *State, error) {
	if f == nil || !wire.Token(flowName(f)) {
		return nil, fmt.Errorf("%w: bad flow name", ErrInvalidFlow)
	}
	c.j.defineRef(f)
	flow := flowName(f)
	end, err := c.j.logEnd(ctx)
	if err != nil {
		return nil, fmt.Errorf("saga: watch %s: %w", flow, err)
	}
	out := make(chan *State, 64)
	go func() {
		defer close(out)
		from := end + 1
		for {
			n := 0
			next, err := c.j.readLog(ctx, wire.Log+flow+".>", from, 0, func(m logMsg) {
				n++
				env, err := parseEnvelope(m.subject, m.header, m.data, 1<<30)
				if err != nil || rogue(m.header, env, 1) != "" || !c.j.vouched(ctx, env, m.header, m.seq) {
					return // a forged event: Get quarantines it
				}
				select {
				case out <- openState(c.opts.ring, env.state.view()):
				case <-ctx.Done():
				}
			})
			from = next
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				c.opts.logger.Warn("choreo: watch: cannot read the saga log; trying again", "flow", flow, "err", err)
			}
			if n == 0 || err != nil {
				select {
				case <-time.After(watchPoll):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// watchPoll is how long Watch waits before it reads the log again when it
// found nothing new: the most a change waits to be seen.
const watchPoll = 100 * time.Millisecond

// logEnd returns the saga log's last stream sequence.
func (j *journal) logEnd(ctx context.Context) (uint64, error) {
	info, err := j.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}
