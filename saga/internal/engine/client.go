package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/internal/wire"
)

// Client starts and queries sagas and owns choreo's streams. It is safe for
// concurrent use. Make one with New; the caller owns the NATS connection.
type Client struct {
	j    *journal
	opts options
	reg  *registry // the flow registry (versions.go)

	attached sync.Map // step consumer name -> time a runner was last seen on it

	roomMu   sync.Mutex
	roomAt   time.Time
	roomErr  error
	roomUsed int64 // events the sagas started since roomAt may append
	roomLeft int64 // events new sagas may still append then
}

const defaultTimeout = 10 * time.Second

// withTimeout applies the default timeout to a context that has none.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultTimeout)
}

// New creates or updates choreo's streams and returns a client. It returns
// an error wrapping ErrInvalidOption for a bad option, ErrUnsafeConfig when
// the existing streams would lose sagas (memory storage not asked for), or
// the broker's error.
func New(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Client, error) {
	c, err := newClient(js, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := c.checkSafety(ctx); err != nil {
		return nil, err
	}
	o := c.opts
	j := c.j
	storage := jetstream.FileStorage
	if o.memory {
		storage = jetstream.MemoryStorage
	}
	j.stream, err = jsutil.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "choreo: saga logs and compensation commands",
		// Ended sagas are removed after the retention by their timers
		// (WithRetention); MaxAge, off by default, is a blunt backstop.
		Subjects:    []string{wire.Log + ">", wire.Cmd + ">"},
		Storage:     storage,
		Replicas:    o.replicas,
		Duplicates:  o.duplicates,
		MaxAge:      o.maxAge,
		MaxMsgs:     o.maxMsgs,
		MaxBytes:    o.maxBytes,
		AllowDirect: true,
		// A full stream refuses new events rather than dropping old state.
		Discard: jetstream.DiscardNew,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: stream %s: %w", StreamName, notProvisioned(js.Conn(), StreamName, err))
	}
	// Schedules cannot live in a DiscardNew stream, and a schedule's target
	// must be in its stream: the timers have a stream of their own.
	j.timers, err = jsutil.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:              TimerStream,
		Description:       "choreo: saga deadlines and expiry: schedules and the timers they fire",
		Subjects:          []string{wire.Sched + ">", wire.Timer + ">"},
		Storage:           storage,
		Replicas:          o.replicas,
		Duplicates:        o.duplicates,
		MaxAge:            o.maxAge,
		AllowMsgSchedules: true,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: stream %s: %w", TimerStream, notProvisioned(js.Conn(), TimerStream, err))
	}
	j.dlq, err = jsutil.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "choreo: messages that could not be processed, with the reason",
		Subjects:    []string{wire.Dead + ">"},
		Storage:     storage,
		Replicas:    o.replicas,
		Duplicates:  o.duplicates,
		AllowDirect: true,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: stream %s: %w", DeadLetterStream, notProvisioned(js.Conn(), DeadLetterStream, err))
	}
	if c.reg, err = openRegistry(ctx, js, o); err != nil {
		return nil, err
	}
	return c, nil
}

// Open returns a client over streams that exist already, changing
// nothing in the broker: for tools (an operator's command line, a
// dashboard) that must never create or reconfigure choreo's streams. It
// returns an error wrapping ErrNotProvisioned when a stream or the flow
// registry is missing.
func Open(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Client, error) {
	c, err := newClient(js, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	j := c.j
	open := func(name string) (jetstream.Stream, error) {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("%w: stream %s does not exist: is choreo provisioned on this server?", ErrNotProvisioned, name)
		}
		if err != nil {
			return nil, fmt.Errorf("saga: stream %s: %w", name, err)
		}
		return s, nil
	}
	if j.stream, err = open(StreamName); err != nil {
		return nil, err
	}
	c.opts.replicas = j.stream.CachedInfo().Config.Replicas
	if j.timers, err = open(TimerStream); err != nil {
		return nil, err
	}
	if j.dlq, err = open(DeadLetterStream); err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, wire.FlowsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w: bucket %s does not exist: is choreo provisioned on this server?", ErrNotProvisioned, wire.FlowsBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("saga: bucket %s: %w", wire.FlowsBucket, err)
	}
	c.reg = &registry{kv: kv, marks: map[string]registryMark{}}
	return c, nil
}

// newClient applies the options and makes a client and its journal over
// js, without a word to the broker: New and Open then find the streams.
func newClient(js jetstream.JetStream, opts []Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if js == nil {
		return nil, fmt.Errorf("%w: nil JetStream", ErrInvalidOption)
	}
	pub, err := newPublisher(js)
	if err != nil {
		return nil, fmt.Errorf("saga: %w", err)
	}
	c := &Client{opts: o}
	c.j = &journal{js: js, pub: pub, nc: js.Conn(), opts: &c.opts, api: jsutil.APIPrefix(js), trust: newTrust()}
	return c, nil
}

// checkSafety refuses configurations that would lose sagas, and picks the
// replica count when none was asked for.
func (c *Client) checkSafety(ctx context.Context) error {
	o := &c.opts
	nc := c.j.nc
	clustered := nc.ConnectedClusterName() != ""
	if o.replicas == 0 {
		o.replicas = 1
		if clustered {
			o.replicas = 3
		}
	}
	if clustered && o.replicas == 1 && !o.unsafe {
		return fmt.Errorf("%w: the server is part of cluster %q but choreo's streams would have 1 replica, so losing that one server loses sagas; use WithReplicas(3), or WithUnsafe() to accept it",
			ErrUnsafeConfig, nc.ConnectedClusterName())
	}
	// Memory storage loses every saga on a restart: never take it over
	// silently.
	if existing, err := c.j.js.Stream(ctx, StreamName); err == nil && existing.CachedInfo().Config.Storage == jetstream.MemoryStorage && !o.memory && !o.unsafe {
		return fmt.Errorf("%w: stream %s uses memory storage, so sagas in flight are lost on a restart; recreate it with file storage, or pass saga.WithMemoryStorage() for a throwaway setup",
			ErrUnsafeConfig, StreamName)
	}
	return nil
}

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

// Start starts a saga of flow f with the given id and input, on the newest
// version of f's flow that the client knows (any *Flow of that name and
// input type it was given: in Handle, Start, a query) unless ExactVersion
// says f's own. The saga runs to its end on that version. Starting an id
// that already exists, on any version, does nothing and returns nil, so
// Start is safe to retry. It returns ErrInvalidFlow for a nil flow,
// ErrInvalidID, ErrInvalidInput for an input that does not encode or is
// over the event size limit, ErrRetired when the version is retired or
// draining (Retire), ErrStreamFull when the saga stream is near its limits
// (see WithStreamLimits), or the broker's error.
func (c *Client) Start(ctx context.Context, f *FlowDef, id string, data []byte, exact bool) error {
	if f == nil {
		return fmt.Errorf("%w: nil flow", ErrInvalidFlow)
	}
	if !ValidID(id) {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	c.j.define(f)
	def, err := c.openVersion(ctx, f, exact)
	if err != nil {
		return err
	}
	return c.start(ctx, def, id, data)
}

func (c *Client) start(ctx context.Context, f *flowDef, id string, data []byte) error {
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
	st := newState(f, id, now())
	st.TraceID = traceIDOf(ctx)
	if !st.Deadline.IsZero() {
		// The timer goes first: a start without its deadline could run
		// for ever, a deadline without its start is dead-lettered.
		if err := c.j.schedule(ctx, st, wire.TimerDeadline, st.Deadline, f.name+"."+id+".timer"); err != nil {
			return err
		}
	}
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
		if _, _, err := c.j.load(ctx, f.name, id, 0); !errors.Is(err, ErrNotFound) {
			return nil
		}
	}
	return fmt.Errorf("saga: start %s/%s: too many rogue events", f.name, id)
}

// name returns the name of the flow f refers to.
func name(f FlowRef) string {
	n, _ := f.flowRef()
	return n
}

// valid reports whether f and id can name a saga.
func valid(f FlowRef, id string) bool {
	return f != nil && ValidID(id) && wire.Token(name(f))
}

// Get returns a saga's state. Each running step says who has it (see
// StepState): Taken by a runner, Unserved (no runner of the saga's flow
// version is attached to it: the saga waits for one), or queued behind
// earlier work, with a Waiting line when it is not Taken. It returns
// ErrNotFound when there is no such saga.
func (c *Client) Get(ctx context.Context, f FlowRef, id string) (*State, error) {
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
	v := st.view()
	for i := range v.Steps {
		if v.Steps[i].Status == StepRunning {
			c.whoHas(ctx, st, seq, &v.Steps[i])
		}
	}
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
	if f == nil || !wire.Token(name(f)) {
		return nil, nil
	}
	c.j.defineRef(f)
	flow := name(f)
	latest := map[string]*State{}
	seqs := map[string]uint64{}
	err := c.j.scan(ctx, wire.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.Log + flow + ".*.*.*.*"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	}, func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		env, err := parseEnvelope(m.Subject(), m.Headers(), m.Data(), 1<<30)
		if err != nil || rogue(m.Headers(), env, 0) != "" || md.Sequence.Stream < seqs[env.id] || !c.j.vouched(ctx, env, m.Headers(), md.Sequence.Stream) {
			return // what Get would quarantine does not stand for a saga
		}
		latest[env.id], seqs[env.id] = env.state, md.Sequence.Stream
	})
	if err != nil {
		return nil, fmt.Errorf("saga: list %s: %w", flow, err)
	}
	var out []*State
	for _, st := range latest {
		if len(statuses) == 0 || slices.Contains(statuses, st.Status) {
			out = append(out, st.view())
		}
	}
	slices.SortFunc(out, func(a, b *State) int { return a.StartedAt.Compare(b.StartedAt) })
	return out, nil
}

// Event is one entry of a saga's log.
type Event struct {
	Sequence uint64          `json:"sequence"`
	Step     string          `json:"step"` // "_saga" for saga-wide events
	Phase    Phase           `json:"phase"`
	Type     string          `json:"type"` // the CloudEvents type of its payload
	Time     time.Time       `json:"time"`
	Data     json.RawMessage `json:"data,omitempty"`
	State    *State          `json:"state"` // the saga's state after the event
}

// String is "step:phase", the form timelines are asserted in.
func (e Event) String() string { return e.Step + ":" + string(e.Phase) }

// Timeline returns a saga's log in order. Event types are those of f's
// definition; with a Named flow, result types read "choreo.saga.done". It
// returns ErrNotFound when there is no such saga.
func (c *Client) Timeline(ctx context.Context, f FlowRef, id string) ([]Event, error) {
	if !valid(f, id) {
		return nil, ErrNotFound
	}
	c.j.defineRef(f)
	_, def := f.flowRef()
	var out []Event
	err := c.j.scan(ctx, wire.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.LogWildcard(name(f), id)},
	}, func(m jetstream.Msg) {
		env, err := parseEnvelope(m.Subject(), m.Headers(), m.Data(), 1<<30)
		if err != nil || rogue(m.Headers(), env, 0) != "" {
			return
		}
		md, err := m.Metadata()
		if err != nil || !c.j.vouched(ctx, env, m.Headers(), md.Sequence.Stream) {
			return // forged: dead-lettered when the saga is read
		}
		e := Event{Sequence: md.Sequence.Stream, Step: env.step, Phase: env.phase, Time: env.state.UpdatedAt, State: env.state}
		if def != nil {
			e.Type = def.typeOf(env.step, env.phase)
		} else {
			e.Type = (&flowDef{}).typeOf("", env.phase)
		}
		if len(m.Data()) > 0 {
			e.Data = slices.Clone(m.Data())
		}
		out = append(out, e)
	})
	if err != nil {
		return nil, fmt.Errorf("saga: timeline %s/%s: %w", name(f), id, err)
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
	if f == nil || !wire.Token(name(f)) {
		return nil, fmt.Errorf("%w: bad flow name", ErrInvalidFlow)
	}
	c.j.defineRef(f)
	flow := name(f)
	js := c.j.js
	cons, err := js.OrderedConsumer(ctx, wire.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.Log + flow + ".>"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: watch %s: %w", flow, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("saga: watch %s: %w", flow, err)
	}
	out := make(chan *State, 64)
	go func() {
		<-ctx.Done()
		it.Stop()
		jsutil.DropOrdered(js, wire.Stream, cons)
	}()
	go func() {
		defer close(out)
		for {
			m, err := it.Next()
			if err != nil {
				return
			}
			env, err := parseEnvelope(m.Subject(), m.Headers(), m.Data(), 1<<30)
			if err != nil || rogue(m.Headers(), env, 0) != "" {
				continue
			}
			if md, err := m.Metadata(); err != nil || !c.j.vouched(ctx, env, m.Headers(), md.Sequence.Stream) {
				continue // a forged event: Get quarantines it
			}
			select {
			case out <- env.state.view():
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// RetryCompensation is the operator's retry of a saga parked as
// compensation_failed: its failed compensations run again with a fresh
// retry budget. It returns ErrNotFound or ErrNotParked.
func (c *Client) RetryCompensation(ctx context.Context, f FlowRef, id string) error {
	if !valid(f, id) {
		return ErrNotFound
	}
	c.j.defineRef(f)
	flow := name(f)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	cur, seq, err := c.j.load(ctx, flow, id, 0)
	if err != nil {
		return err
	}
	e := entry{step: wire.SagaStep, phase: PhaseResume, apply: func(s *State, _ time.Time) error { return s.retryParked() }}
	st, seq, err := c.j.append(ctx, cur, seq, e)
	if err != nil {
		return err
	}
	return c.j.emitDue(ctx, st, seq)
}

// DeadLetter is a message choreo could not process.
type DeadLetter struct {
	Sequence uint64      // in the dead-letter stream
	Subject  string      // where the message was read
	Reason   string      // why it could not be processed
	Consumer string      // who read it
	Time     time.Time   // when it was dead-lettered
	Header   nats.Header // the original headers, less the broker's
	Data     []byte      // the payload; only its start from LatestDeadLetters
	Size     int         // the payload's size in bytes
}

// DeadLetters returns what was dead-lettered for flow f, oldest first; with
// f nil, every flow's (including messages whose flow was unreadable).
func (c *Client) DeadLetters(ctx context.Context, f FlowRef) ([]DeadLetter, error) {
	filter := wire.Dead + ">"
	if f != nil {
		filter = wire.Dead + name(f)
	}
	var out []DeadLetter
	err := c.j.scan(ctx, wire.DeadLetterStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}, func(m jetstream.Msg) {
		h := m.Headers()
		var seq uint64
		if md, _ := m.Metadata(); md != nil {
			seq = md.Sequence.Stream
		}
		out = append(out, deadLetterOf(seq, h, slices.Clone(m.Data())))
	})
	if err != nil {
		return nil, fmt.Errorf("saga: dead letters: %w", err)
	}
	return out, nil
}

// LatestDeadLetters returns the newest dead letters of every flow, at most
// n, oldest first, each with the first dataMax bytes of its payload in Data
// (Size says how big it is), and how many the stream holds: what a page
// that lists them needs, in memory bounded by n and dataMax however many
// and however big they are (any participant may dead-letter its flow's
// messages).
func (c *Client) LatestDeadLetters(ctx context.Context, n, dataMax int) ([]DeadLetter, uint64, error) {
	if n < 1 || dataMax < 0 {
		return nil, 0, fmt.Errorf("%w: want at least 1 dead letter and a data size from 0", ErrInvalidOption)
	}
	ictx, cancel := withTimeout(ctx)
	info, err := c.j.dlq.Info(ictx)
	cancel()
	if err != nil {
		return nil, 0, fmt.Errorf("saga: dead letters: %w", err)
	}
	st := info.State
	if st.Msgs == 0 {
		return nil, 0, nil
	}
	from := st.FirstSeq
	if st.LastSeq >= uint64(n) && st.LastSeq-uint64(n)+1 > from {
		from = st.LastSeq - uint64(n) + 1
	}
	var out []DeadLetter
	err = c.j.scan(ctx, wire.DeadLetterStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.Dead + ">"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	}, func(m jetstream.Msg) {
		var seq uint64
		if md, _ := m.Metadata(); md != nil {
			seq = md.Sequence.Stream
		}
		if seq > st.LastSeq || len(out) == n {
			return // dead-lettered since the count
		}
		data := m.Data()
		d := deadLetterOf(seq, m.Headers(), slices.Clone(data[:min(len(data), dataMax)]))
		d.Size = len(data)
		out = append(out, d)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("saga: dead letters: %w", err)
	}
	return out, st.Msgs, nil
}

// notProvisioned explains the failure to create or update a stream on a
// connection whose identity was refused it.
func notProvisioned(nc *nats.Conn, stream string, err error) error {
	if nc != nil && errors.Is(nc.LastError(), nats.ErrPermissionViolation) && strings.Contains(nc.LastError().Error(), "."+stream) {
		return fmt.Errorf("%w: stream %s is missing or differs from what this client wants, and its identity may not create or update it: run provisioning (access.Provision) with the admin identity, with the same options (%v)",
			ErrNotProvisioned, stream, err)
	}
	return err
}
