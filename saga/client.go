package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
)

// Client starts and queries sagas and owns choreo's streams. It is safe for
// concurrent use. Make one with New; the caller owns the NATS connection.
type Client struct {
	js     jetstream.JetStream
	nc     *nats.Conn
	stream jetstream.Stream
	dlq    jetstream.Stream
	timers jetstream.Stream
	opts   options
	api    string // JetStream API prefix, ending in "."

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
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if js == nil {
		return nil, fmt.Errorf("%w: nil JetStream", ErrInvalidOption)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	c := &Client{js: js, nc: js.Conn(), opts: o, api: apiPrefix(js.Options())}
	if err := c.checkSafety(ctx); err != nil {
		return nil, err
	}
	o = c.opts
	storage := jetstream.FileStorage
	if o.memory {
		storage = jetstream.MemoryStorage
	}
	var err error
	c.stream, err = jsutil.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "choreo: saga logs and compensation commands",
		Subjects:    []string{subjLog + ">", subjCmd + ">"},
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
		return nil, fmt.Errorf("saga: stream %s: %w", StreamName, err)
	}
	// Schedules cannot live in a DiscardNew stream, and a schedule's target
	// must be in its stream: the timers have a stream of their own.
	c.timers, err = jsutil.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:              TimerStream,
		Description:       "choreo: saga deadline schedules and the timers they fire",
		Subjects:          []string{subjSched + ">", subjTimer + ">"},
		Storage:           storage,
		Replicas:          o.replicas,
		Duplicates:        o.duplicates,
		MaxAge:            o.maxAge,
		AllowMsgSchedules: true,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: stream %s: %w", TimerStream, err)
	}
	c.dlq, err = jsutil.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "choreo: messages that could not be processed, with the reason",
		Subjects:    []string{subjDead + ">"},
		Storage:     storage,
		Replicas:    o.replicas,
		Duplicates:  o.duplicates,
		AllowDirect: true,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: stream %s: %w", DeadLetterStream, err)
	}
	return c, nil
}

// checkSafety refuses configurations that would lose sagas, and picks the
// replica count when none was asked for.
func (c *Client) checkSafety(ctx context.Context) error {
	o := &c.opts
	clustered := c.nc.ConnectedClusterName() != ""
	if o.replicas == 0 {
		o.replicas = 1
		if clustered {
			o.replicas = 3
		}
	}
	if clustered && o.replicas == 1 && !o.unsafe {
		return fmt.Errorf("%w: the server is part of cluster %q but choreo's streams would have 1 replica, so losing that one server loses sagas; use WithReplicas(3), or WithUnsafe() to accept it",
			ErrUnsafeConfig, c.nc.ConnectedClusterName())
	}
	// Memory storage loses every saga on a restart: never take it over
	// silently.
	if existing, err := c.js.Stream(ctx, StreamName); err == nil && existing.CachedInfo().Config.Storage == jetstream.MemoryStorage && !o.memory && !o.unsafe {
		return fmt.Errorf("%w: stream %s uses memory storage, so sagas in flight are lost on a restart; recreate it with file storage, or pass saga.WithMemoryStorage() for a throwaway setup",
			ErrUnsafeConfig, StreamName)
	}
	return nil
}

// room refuses a new saga of f when the saga stream is nearly full. The
// stream's state is read again once the events of the sagas started since
// (at most 2 per step and 2 more each) could have used half of the room
// left, or after 250ms; and only when the stream has limits.
func (c *Client) room(ctx context.Context, f *Flow) error {
	c.roomMu.Lock()
	defer c.roomMu.Unlock()
	c.roomUsed += int64(2*len(f.steps) + 2)
	if c.roomUsed < c.roomLeft/2 && time.Since(c.roomAt) < 250*time.Millisecond {
		return c.roomErr
	}
	info, err := c.stream.Info(ctx)
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

// fullError marks the broker's refusal of a write to a full stream.
func fullError(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (strings.Contains(apiErr.Description, "maximum messages") || strings.Contains(apiErr.Description, "maximum bytes") ||
		strings.Contains(apiErr.Description, "insufficient resources")) {
		return fmt.Errorf("%w: %w", ErrStreamFull, err)
	}
	return err
}

func apiPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return jetstream.DefaultAPIPrefix
}

// lastMsg returns the newest message on subject (wildcards allowed) with
// its stream sequence, or ErrNotFound. It asks the nearest replica (a
// direct get), which on a cluster may lag the stream's leader: a follower
// catching up, or one cut off from the others. When its answer is older
// than min, the sequence of a message the caller knows is in the log, or
// it has none, the leader decides: acting on a stale state would drop a
// step's trigger or a compensation as not due.
func (c *Client) lastMsg(ctx context.Context, subject string, min uint64) (*nats.Msg, uint64, error) {
	m, seq, err := c.directLast(ctx, subject)
	if c.opts.replicas <= 1 || (err == nil && seq >= min) || (err != nil && !errors.Is(err, ErrNotFound)) {
		return m, seq, err
	}
	return c.leaderLast(ctx, subject)
}

func (c *Client) directLast(ctx context.Context, subject string) (*nats.Msg, uint64, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	resp, err := c.nc.RequestWithContext(ctx, c.api+"DIRECT.GET."+StreamName, req)
	if err != nil {
		return nil, 0, fmt.Errorf("saga: read %s: %w", subject, err)
	}
	if st := resp.Header.Get("Status"); st != "" {
		if st == "404" {
			return nil, 0, ErrNotFound
		}
		return nil, 0, fmt.Errorf("saga: read %s: status %s %s", subject, st, resp.Header.Get("Description"))
	}
	// The broker appends its headers after the message's own: a message
	// that carried its own copy of them has two values, the broker's last.
	seq, err := strconv.ParseUint(lastValue(resp.Header, jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("saga: read %s: bad sequence header", subject)
	}
	return resp, seq, nil
}

// leaderLast is directLast answered by the stream's leader. The message it
// returns has the headers a direct get adds, after its own, so that the
// same checks apply to both.
func (c *Client) leaderLast(ctx context.Context, subject string) (*nats.Msg, uint64, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	resp, err := c.nc.RequestWithContext(ctx, c.api+"STREAM.MSG.GET."+StreamName, req)
	if err != nil {
		return nil, 0, fmt.Errorf("saga: read %s from the leader: %w", subject, err)
	}
	var r struct {
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Subject string `json:"subject"`
			Seq     uint64 `json:"seq"`
			Header  []byte `json:"hdrs"`
			Data    []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, 0, fmt.Errorf("saga: read %s from the leader: %w", subject, err)
	}
	switch {
	case r.Error != nil && r.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return nil, 0, ErrNotFound
	case r.Error != nil:
		return nil, 0, fmt.Errorf("saga: read %s from the leader: %s (%d)", subject, r.Error.Description, r.Error.ErrCode)
	case r.Message == nil:
		return nil, 0, fmt.Errorf("saga: read %s from the leader: empty answer", subject)
	}
	m := &nats.Msg{Subject: r.Message.Subject, Data: r.Message.Data, Header: nats.Header{}}
	if len(r.Message.Header) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
			m.Header = nats.Header{} // undecodable: the checks dead-letter it
		}
	}
	m.Header.Add(jetstream.SubjectHeader, r.Message.Subject)
	m.Header.Add(jetstream.SequenceHeader, strconv.FormatUint(r.Message.Seq, 10))
	return m, r.Message.Seq, nil
}

func lastValue(h nats.Header, key string) string {
	v := h.Values(key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// rogue says why a log event was not appended by choreo, or "" when it may
// have been. read is how many copies of Nats-Subject and Nats-Sequence the
// read itself added (1 for a direct get, 0 through a consumer): a message
// that carried its own is forged. choreo appends every event with
// compare-and-set, and only a start may expect an empty history. env may be
// nil (an envelope that did not parse): then the last check is skipped.
func rogue(h nats.Header, env *envelope, read int) string {
	switch {
	case len(h.Values(jetstream.SubjectHeader)) != read || len(h.Values(jetstream.SequenceHeader)) != read:
		return "carries the broker's own headers (Nats-Subject, Nats-Sequence): not appended by choreo"
	case len(h.Values(jetstream.ExpectedLastSubjSeqHeader)) != 1:
		// A copy published without compare-and-set (a replayed or forged
		// event) could carry an older state than the log's.
		return "no compare-and-set header (Nats-Expected-Last-Subject-Sequence): not appended by choreo"
	case env != nil && h.Get(jetstream.ExpectedLastSubjSeqHeader) == "0" && env.phase != phaseStart:
		return "unknown saga: first event is not a start"
	}
	return ""
}

// load returns a saga's current state and the stream sequence of its newest
// event. A newest event that choreo did not append (a client publishing on
// the saga's subjects without compare-and-set) is dead-lettered and deleted
// so that it cannot stand for the state.
func (c *Client) load(ctx context.Context, flow, id string, min uint64) (*State, uint64, error) {
	for range 16 {
		m, seq, err := c.lastMsg(ctx, logWildcard(flow, id), min)
		if err != nil {
			return nil, 0, err
		}
		subject := lastValue(m.Header, jetstream.SubjectHeader)
		env, err := parseEnvelope(subject, m.Header, m.Data, 1<<30)
		if err != nil {
			env = nil
		}
		if why := rogue(m.Header, env, 1); why != "" {
			err = bad("%s", why)
		}
		if err != nil {
			c.opts.logger.Warn("choreo: quarantining a saga log event", "subject", subject, "seq", seq, "reason", err)
			if derr := c.deadLetter(ctx, flow, StreamName, subject, seq, "load", m.Header, m.Data, err.Error()); derr != nil {
				return nil, 0, derr
			}
			if derr := c.stream.DeleteMsg(ctx, seq); derr != nil && !errors.Is(derr, jetstream.ErrMsgNotFound) {
				return nil, 0, fmt.Errorf("saga: delete rogue event %d: %w", seq, derr)
			}
			continue
		}
		return env.state, seq, nil
	}
	return nil, 0, fmt.Errorf("saga: saga %s/%s: too many rogue events", flow, id)
}

// transition is a change to a saga's state at time now.
type transition func(s *State, now time.Time) error

// appendEvent applies tr to the saga's current state and appends the event
// carrying the result, with compare-and-set on the saga's log. On a lost
// race it reads the state again and re-applies. It returns errNoop when tr
// does not apply to the current state.
func (c *Client) appendEvent(ctx context.Context, flow, id, step, phase, ctype, msgID string, data []byte, tr transition) (*State, uint64, error) {
	return c.appendFrom(ctx, nil, 0, flow, id, step, phase, ctype, msgID, data, tr)
}

// appendFrom is appendEvent starting from a state the caller already has
// (nil to read it first), whose newest event is at sequence seq. It
// returns the state it leaves (the current one when tr does not apply) and
// that state's sequence.
func (c *Client) appendFrom(ctx context.Context, cur *State, seq uint64, flow, id, step, phase, ctype, msgID string, data []byte, tr transition) (*State, uint64, error) {
	var min uint64 // after a lost race: the log is past seq
	for range 64 {
		if cur == nil {
			var err error
			if cur, seq, err = c.load(ctx, flow, id, min); err != nil {
				return nil, 0, err
			}
		}
		next := cur.clone()
		next.Events++
		now := time.Now().UTC().Truncate(timeUnit)
		if err := tr(next, now); err != nil {
			return cur, seq, err
		}
		next.settle(now)
		ok, nseq, err := c.publishState(ctx, next, seq, step, phase, ctype, msgID, data, now)
		if err != nil {
			return nil, 0, err
		}
		if ok {
			return next, nseq, nil
		}
		cur, min = nil, seq+1
	}
	return nil, 0, fmt.Errorf("saga: %s/%s: too much contention", flow, id)
}

// publishState appends one event to a saga's log, expecting its newest
// event at sequence last, and returns the event's sequence. It returns
// false when another event won the race.
func (c *Client) publishState(ctx context.Context, st *State, last uint64, step, phase, ctype, msgID string, data []byte, now time.Time) (bool, uint64, error) {
	raw := encodeState(st)
	m := nats.NewMsg(logSubject(st.Flow, st.ID, step, phase))
	m.Header = c.header(st.Flow, st.Version, st.ID, step, phase, ctype, msgID, st.Epoch, now)
	m.Header.Set(HeaderState, string(raw))
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, logWildcard(st.Flow, st.ID))
	m.Data = data
	ack, err := c.js.PublishMsg(ctx, m)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return false, 0, nil
		}
		return false, 0, fmt.Errorf("saga: append %s: %w", m.Subject, fullError(err))
	}
	// A duplicate means this very event was appended before (a retry after
	// a lost acknowledgement): reading again will show it.
	return !ack.Duplicate, ack.Sequence, nil
}

// Start starts a saga of flow f with the given id and input, whose type must
// be the flow's input type. Starting an id that already exists does nothing
// and returns nil, so Start is safe to retry. It returns ErrInvalidID,
// ErrInvalidInput, ErrStreamFull when the saga stream is near its limits
// (see WithStreamLimits), or the broker's error.
func (c *Client) Start(ctx context.Context, f *Flow, id string, input any) error {
	if f == nil {
		return fmt.Errorf("%w: nil flow", ErrInvalidFlow)
	}
	if !ValidID(id) {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	if reflect.TypeOf(input) != f.input {
		return fmt.Errorf("%w: flow %s takes %v, got %T", ErrInvalidInput, f.name, f.input, input)
	}
	data, err := json.Marshal(input)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	if len(data) > c.opts.maxEventSize-4096 {
		return fmt.Errorf("%w: input is %d bytes, limit %d", ErrInvalidInput, len(data), c.opts.maxEventSize-4096)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := c.room(ctx, f); err != nil {
		if _, _, lerr := c.load(ctx, f.name, id, 0); lerr == nil {
			return nil // started before: Start stays safe to retry
		}
		return err
	}
	now := time.Now().UTC().Truncate(timeUnit)
	st := newState(f, id, now)
	if !st.Deadline.IsZero() {
		// The timer goes first: a start without its deadline could run
		// for ever, a deadline without its start is dead-lettered.
		m := nats.NewMsg(subjSched + f.name + "." + id)
		m.Header = c.header(f.name, f.version, id, sagaStep, phaseTimer, eventTypeFor(phaseTimer), f.name+"."+id+".timer", 0, now)
		m.Header.Set("Nats-Schedule", "@at "+st.Deadline.Format(time.RFC3339Nano))
		m.Header.Set("Nats-Schedule-Target", subjTimer+f.name+"."+id)
		if _, err := c.js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("saga: schedule deadline: %w", fullError(err))
		}
	}
	for range 16 {
		ok, _, err := c.publishState(ctx, st, 0, sagaStep, phaseStart, f.inputType, f.name+"."+id+".start", data, now)
		if err != nil || ok {
			return err
		}
		// Lost the race: the saga exists, unless what is there is rogue.
		if _, _, err := c.load(ctx, f.name, id, 0); !errors.Is(err, ErrNotFound) {
			return nil
		}
	}
	return fmt.Errorf("saga: start %s/%s: too many rogue events", f.name, id)
}

// Get returns a saga's state. It returns ErrNotFound when there is no such
// saga.
func (c *Client) Get(ctx context.Context, flow, id string) (*State, error) {
	if !ValidID(id) || !tokenRE.MatchString(flow) {
		return nil, ErrNotFound
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	st, _, err := c.load(ctx, flow, id, 0)
	if err != nil {
		return nil, err
	}
	return st.view(), nil
}

// scan reads every message an ordered consumer with cfg delivers now, and
// stops at the end of what was there when it began.
func (c *Client) scan(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, fn func(jetstream.Msg)) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if cfg.InactiveThreshold == 0 {
		cfg.InactiveThreshold = jsutil.ScanInactivity
	}
	cons, err := c.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return err
	}
	defer jsutil.DropOrdered(c.js, stream, cons)
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	pending := info.NumPending
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 500)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			if pending == 0 {
				continue // drain what the batch still holds
			}
			n++
			fn(m)
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			pending = md.NumPending
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		if n == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// List returns the sagas of a flow whose status is one of statuses (all
// sagas when none is given), oldest first. It reads the newest events of
// every saga of the flow: use it for operators and tests, not per request on
// a large history.
func (c *Client) List(ctx context.Context, flow string, statuses ...Status) ([]*State, error) {
	latest := map[string]*State{}
	seqs := map[string]uint64{}
	err := c.scan(ctx, StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjLog + flow + ".*.*.*"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	}, func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		env, err := parseEnvelope(m.Subject(), m.Headers(), m.Data(), 1<<30)
		if err != nil || rogue(m.Headers(), env, 0) != "" || md.Sequence.Stream < seqs[env.id] {
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
	Step     string          `json:"step"`  // "_saga" for saga-wide events
	Phase    string          `json:"phase"` // start, done, failed, skipped, retry, compensated, undo-retry, parked, deadline, resume
	Type     string          `json:"type"`
	Time     time.Time       `json:"time"`
	Data     json.RawMessage `json:"data,omitempty"`
	State    *State          `json:"state"` // the saga's state after the event
}

// String is "step:phase", the form timelines are asserted in.
func (e Event) String() string { return e.Step + ":" + e.Phase }

// Timeline returns a saga's log in order. It returns ErrNotFound when there
// is no such saga.
func (c *Client) Timeline(ctx context.Context, flow, id string) ([]Event, error) {
	if !ValidID(id) || !tokenRE.MatchString(flow) {
		return nil, ErrNotFound
	}
	var out []Event
	err := c.scan(ctx, StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{logWildcard(flow, id)},
	}, func(m jetstream.Msg) {
		env, err := parseEnvelope(m.Subject(), m.Headers(), m.Data(), 1<<30)
		if err != nil {
			return
		}
		md, _ := m.Metadata()
		e := Event{Step: env.step, Phase: env.phase, Type: env.ctype, Time: env.time, State: env.state}
		if md != nil {
			e.Sequence = md.Sequence.Stream
		}
		if len(m.Data()) > 0 {
			e.Data = slices.Clone(m.Data())
		}
		out = append(out, e)
	})
	if err != nil {
		return nil, fmt.Errorf("saga: timeline %s/%s: %w", flow, id, err)
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}

// Watch sends the state of every saga of flow each time it changes, from
// now on, until ctx ends; then it closes the channel. A slow reader slows
// the watch, not the sagas.
func (c *Client) Watch(ctx context.Context, flow string) (<-chan *State, error) {
	cons, err := c.js.OrderedConsumer(ctx, StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjLog + flow + ".>"},
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
		jsutil.DropOrdered(c.js, StreamName, cons)
	}()
	go func() {
		defer close(out)
		for {
			m, err := it.Next()
			if err != nil {
				return
			}
			env, err := parseEnvelope(m.Subject(), m.Headers(), m.Data(), 1<<30)
			if err != nil {
				continue
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
func (c *Client) RetryCompensation(ctx context.Context, flow, id string) error {
	if !ValidID(id) || !tokenRE.MatchString(flow) {
		return ErrNotFound
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	cur, _, err := c.load(ctx, flow, id, 0)
	if err != nil {
		return err
	}
	msgID := fmt.Sprintf("%s.%s.resume.%d", flow, id, cur.Epoch+1)
	st, seq, err := c.appendEvent(ctx, flow, id, sagaStep, phaseResume, eventTypeFor(phaseResume), msgID, nil, func(s *State, _ time.Time) error {
		return s.retryParked()
	})
	if err != nil {
		return err
	}
	return c.emitDue(ctx, st, seq)
}

// emitDue publishes the compensation commands that st makes due. Their ids
// are deterministic, so emitting again is harmless.
func (c *Client) emitDue(ctx context.Context, st *State, seq uint64) error {
	now := time.Now().UTC()
	for _, name := range st.dueUndo() {
		msgID := fmt.Sprintf("%s.%s.%s.undo.%d", st.Flow, st.ID, name, st.Epoch)
		m := nats.NewMsg(subjCmd + st.Flow + "." + st.ID + "." + name + "." + phaseUndo)
		m.Header = c.header(st.Flow, st.Version, st.ID, name, phaseUndo, eventTypeFor(phaseUndo), msgID, st.Epoch, now)
		// Its reader must not judge it by a state older than this one.
		m.Header.Set(HeaderAfter, strconv.FormatUint(seq, 10))
		if _, err := c.js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("saga: command %s: %w", m.Subject, err)
		}
	}
	return nil
}

// DeadLetter is a message choreo could not process.
type DeadLetter struct {
	Sequence uint64      // in the dead-letter stream
	Subject  string      // where the message was read
	Reason   string      // why it could not be processed
	Consumer string      // who read it
	Time     time.Time   // when it was dead-lettered
	Header   nats.Header // the original headers, less the broker's
	Data     []byte
}

// deadLetter copies a message to the dead-letter stream with the reason.
// The copy's id derives from the original's stream, sequence and reader,
// so a reader copying the same message twice stores one.
func (c *Client) deadLetter(ctx context.Context, flow, stream, subject string, seq uint64, consumer string, h nats.Header, data []byte, reason string) error {
	if !tokenRE.MatchString(flow) {
		flow = "_"
	}
	m := nats.NewMsg(subjDead + flow)
	m.Header = nats.Header{}
	for k, vs := range h {
		if strings.HasPrefix(strings.ToLower(k), "nats-") {
			continue
		}
		m.Header[k] = slices.Clone(vs)
	}
	m.Header.Set(HeaderDeadReason, reason)
	m.Header.Set(HeaderDeadSubject, subject)
	m.Header.Set(HeaderDeadSequence, strconv.FormatUint(seq, 10))
	m.Header.Set(HeaderDeadConsumer, consumer)
	m.Header.Set(HeaderDeadTime, time.Now().UTC().Format(time.RFC3339Nano))
	m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("dlq.%s.%d.%s", stream, seq, consumer))
	m.Data = data
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("saga: dead-letter: %w", err)
	}
	return nil
}

// DeadLetters returns what was dead-lettered, oldest first; with flow set,
// only that flow's (flow "_" holds messages whose flow was unreadable).
func (c *Client) DeadLetters(ctx context.Context, flow string) ([]DeadLetter, error) {
	filter := subjDead + ">"
	if flow != "" {
		filter = subjDead + flow
	}
	var out []DeadLetter
	err := c.scan(ctx, DeadLetterStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}, func(m jetstream.Msg) {
		md, _ := m.Metadata()
		h := m.Headers()
		d := DeadLetter{
			Subject: h.Get(HeaderDeadSubject), Reason: h.Get(HeaderDeadReason),
			Consumer: h.Get(HeaderDeadConsumer), Header: h, Data: slices.Clone(m.Data()),
		}
		d.Time, _ = time.Parse(time.RFC3339Nano, h.Get(HeaderDeadTime))
		if md != nil {
			d.Sequence = md.Sequence.Stream
		}
		out = append(out, d)
	})
	if err != nil {
		return nil, fmt.Errorf("saga: dead letters: %w", err)
	}
	return out, nil
}

// eventData returns the payload of a saga's newest event on step/phase.
func (c *Client) eventData(ctx context.Context, flow, id, step, phase string) ([]byte, error) {
	m, _, err := c.lastMsg(ctx, logSubject(flow, id, step, phase), 1) // it is in the log
	if err != nil {
		return nil, fmt.Errorf("saga: %s/%s: read %s %s: %w", flow, id, step, phase, err)
	}
	return m.Data, nil
}
