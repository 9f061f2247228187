package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// room refuses a new saga of f when the saga stream is nearly full. The
// stream's state is read again once the events of the sagas started since
// (at most 2 per step and 2 more each) could have used half of the room
// left, or after 250ms; and only when the stream has limits.
func (c *Client) room(ctx context.Context, f *flowDef) error {
	c.roomMu.Lock()
	defer c.roomMu.Unlock()
	c.roomUsed += int64(2*len(f.steps) + 2)
	if c.roomUsed < c.roomLeft/2 && time.Since(c.roomAt) < 250*time.Millisecond {
		return c.roomErr
	}
	info, err := c.j.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("saga: stream %s: %w", StreamName, err)
	}
	c.roomAt, c.roomErr, c.roomUsed = time.Now(), nil, 0
	cfg, st := info.Config, info.State
	free := 1 - c.opts.headroom
	c.roomLeft = 1 << 62
	if cfg.MaxMsgs > 0 {
		c.roomLeft = int64(free*float64(cfg.MaxMsgs)) - int64(st.Msgs)
		if c.roomLeft <= 0 {
			c.roomErr = fmt.Errorf("%w: stream %s holds %d of its %d messages; new sagas are refused so that those in flight can finish (raise the limit, or let old sagas age out)",
				ErrStreamFull, StreamName, st.Msgs, cfg.MaxMsgs)
		}
	}
	if cfg.MaxBytes > 0 && c.roomErr == nil {
		// In bytes, a saga's events are counted as 1 KiB each.
		c.roomLeft = min(c.roomLeft, (int64(free*float64(cfg.MaxBytes))-int64(st.Bytes))/1024)
		if float64(st.Bytes) >= free*float64(cfg.MaxBytes) {
			c.roomErr = fmt.Errorf("%w: stream %s holds %d of its %d bytes; new sagas are refused so that those in flight can finish (raise the limit, or let old sagas age out)",
				ErrStreamFull, StreamName, st.Bytes, cfg.MaxBytes)
		}
	}
	if cfg.MaxMsgs <= 0 && cfg.MaxBytes <= 0 {
		c.roomAt = time.Now().Add(time.Hour) // no limits: look again in an hour
	}
	return c.roomErr
}

// Start starts a saga of flow f with the given id and input, on f's
// version: exactly the version passed, never another one (a rolling
// upgrade has old builds name the old version and new builds the new
// one). The saga runs to its end on that version. Starting an id that
// already exists, on any version, does nothing and returns nil, so Start
// is safe to retry. It returns ErrInvalidFlow for a nil flow,
// ErrInvalidID, ErrInvalidInput for an input that does not encode or is
// over the event size limit, ErrRetired when the version is retired or
// draining (Retire), ErrStreamFull when the saga stream is near its limits
// (see WithStreamLimits), or the broker's error. With At or After, the
// saga is recorded now as scheduled and begins then (startAt).
func (c *Client) Start(ctx context.Context, f *FlowDef, id string, data []byte, opts ...StartOption) error {
	if f == nil {
		return fmt.Errorf("%w: nil flow", ErrInvalidFlow)
	}
	if !ValidID(id) {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	c.j.define(f)
	if err := c.open(ctx, f); err != nil {
		return err
	}
	var o startOpts
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return c.start(ctx, f, id, data, o)
}

// StartOption changes how Start starts a saga.
type StartOption func(*startOpts)

type startOpts struct {
	at     time.Time
	after  time.Duration
	parent *ParentRef // the saga and step whose child it is (children.go)
}

// At starts the saga at t: it is recorded now, as scheduled, and begins
// at t. A time not after now begins it at once.
func At(t time.Time) StartOption { return func(o *startOpts) { o.at, o.after = t, 0 } }

// After starts the saga once d has passed: At(now + d).
func After(d time.Duration) StartOption {
	return func(o *startOpts) { o.at, o.after = time.Time{}, d }
}

// start starts a saga of f as o says: now or later, and as a child of
// o.parent when it is one.
func (c *Client) start(ctx context.Context, f *flowDef, id string, data []byte, o startOpts) error {
	if len(data) > c.opts.maxEventSize-4096 {
		return fmt.Errorf("%w: input is %d bytes, limit %d", ErrInvalidInput, len(data), c.opts.maxEventSize-4096)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	ctx, span := c.j.startSpan(ctx, f, id)
	defer span.End()
	if err := c.room(ctx, f); err != nil {
		if _, _, lerr := c.j.load(ctx, f.name, id, 0); lerr == nil {
			return nil // started before: Start stays safe to retry
		}
		return err
	}
	now := c.j.sagaTime()
	at := o.at
	if o.after > 0 {
		at = now.Add(o.after)
	}
	if at.After(now) {
		return c.startAt(ctx, f, id, data, now, at.UTC().Truncate(timeUnit))
	}
	if exists, err := c.indexStart(ctx, f, id, data); exists || err != nil {
		return err
	}
	st := newState(f, id, now)
	st.TraceID = traceIDOf(ctx)
	st.Parent = o.parent
	if !st.Deadline.IsZero() {
		// The timer goes first: a start without its deadline could run
		// for ever, a deadline without its start is dead-lettered.
		if err := c.j.schedule(ctx, st, wire.TimerDeadline, st.Deadline, f.name+"."+id+".timer"); err != nil {
			return err
		}
	}
	// What was read of the version's status is at most a statusTTL old
	// when the start is published (read again if it aged meanwhile), so
	// Retire knows how long to wait for starts that had not heard of it.
	if err := c.open(ctx, f); err != nil {
		return err
	}
	return c.publishStart(ctx, st, data)
}

// startAt records a saga of f that begins at at: scheduled, with nothing
// triggered, and the saga's one broker schedule set to fire then into the
// version's timer consumer, whose runner appends the begin (handlers.go).
// The schedule goes first: a scheduled saga without it would never begin,
// a schedule without its saga is dead-lettered when it fires. A saga that
// exists already is left as it is: setting its schedule again would
// replace its deadline or its expiry.
func (c *Client) startAt(ctx context.Context, f *flowDef, id string, data []byte, now, at time.Time) error {
	switch _, _, err := c.j.load(ctx, f.name, id, 0); {
	case err == nil:
		return nil
	case !errors.Is(err, ErrNotFound):
		return err
	}
	if _, err := c.indexStart(ctx, f, id, data); err != nil {
		return err
	}
	st := newScheduled(f, id, now, at)
	st.TraceID = traceIDOf(ctx)
	if err := c.j.schedule(ctx, st, wire.TimerBegin, at, f.name+"."+id+".begin"); err != nil {
		return err
	}
	if err := c.open(ctx, f); err != nil {
		return err
	}
	return c.publishStart(ctx, st, data)
}

// indexStart indexes the search attributes of a saga of f computed from
// its input, before its start is appended (index.go). A saga that exists
// already is left as it is (exists): its attributes are those it started
// with. It returns ErrInvalidInput when an attribute cannot be computed.
func (c *Client) indexStart(ctx context.Context, f *flowDef, id string, data []byte) (exists bool, err error) {
	if len(f.attrsFrom("")) == 0 {
		return false, nil
	}
	switch _, _, err := c.j.load(ctx, f.name, id, 0); {
	case err == nil:
		return true, nil
	case !errors.Is(err, ErrNotFound):
		return false, err
	}
	subjects, err := attrSubjects(f, id, "", data)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	return false, c.j.putIndex(ctx, subjects)
}

// publishStart appends st, a saga's first state, with its input.
func (c *Client) publishStart(ctx context.Context, st *State, data []byte) error {
	e := entry{step: wire.SagaStep, phase: PhaseStart, data: data}
	for range 16 {
		ok, _, err := c.j.publish(ctx, st, 0, e)
		if ok {
			c.j.observe(st, wire.SagaStep, PhaseStart, "")
		}
		if err != nil || ok {
			return err
		}
		// Lost the race: the saga exists, unless what is there is rogue.
		cur, _, err := c.j.load(ctx, st.Flow, st.ID, 0)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err == nil && cur.Status == StatusScheduled && st.Status != StatusScheduled && !st.Deadline.IsZero() {
			// This start's deadline timer replaced the begin of the
			// scheduled saga there (the saga's one schedule): set it again.
			at := cur.Scheduled
			if soon := c.j.sagaTime().Add(time.Second); at.Before(soon) {
				at = soon
			}
			return c.j.schedule(ctx, cur, wire.TimerBegin, at, fmt.Sprintf("%s.%s.begin.%d", cur.Flow, cur.ID, time.Now().UnixNano()))
		}
		return nil
	}
	return fmt.Errorf("saga: start %s/%s: too many rogue events", st.Flow, st.ID)
}

// status returns a version's status, from the bucket at most once a
// statusTTL. A bucket it cannot read counts as active (new sagas are not
// refused because the registry is unreachable), logged once a minute.
func (c *Client) status(ctx context.Context, flow string, version int) versionMark {
	r := c.reg
	key := statusKey(flow, version)
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.marks[key]; ok && time.Since(m.at) < statusTTL {
		return m.mark
	}
	var mark versionMark
	e, err := r.kv.Get(ctx, key)
	switch {
	case err == nil:
		if jerr := json.Unmarshal(e.Value(), &mark); jerr != nil {
			err = jerr
		}
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		err = nil
	}
	if err != nil {
		if time.Since(r.warned) > time.Minute {
			r.warned = time.Now()
			c.opts.logger.Warn("choreo: cannot read the flow registry; starting sagas as if the version were active", "flow", flow, "version", version, "err", err)
		}
		return versionMark{}
	}
	r.marks[key] = registryMark{mark: mark, at: time.Now()}
	return mark
}

// open returns ErrRetired when f's version is draining or retired.
func (c *Client) open(ctx context.Context, f *flowDef) error {
	m := c.status(ctx, f.name, f.version)
	if refused(m.Status) {
		return fmt.Errorf("%w: flow %s v%d is %s since %s (%s): start a newer version", ErrRetired, f.name, f.version, m.Status, m.Since.Format(time.RFC3339), m.Reason)
	}
	return nil
}
