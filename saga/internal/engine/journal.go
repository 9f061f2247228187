package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/internal/wire"
)

// journal is the saga log: every saga's events in the CHOREO stream, with
// the commands and timers derived from them and the dead letters. It owns
// reading a saga's newest state (from the leader when a replica lags),
// appending with compare-and-set, emitting what a state makes due, and
// dead-lettering. Client and Runner both work through it.
type journal struct {
	js     jetstream.JetStream // the caller's
	pub    jetstream.JetStream // choreo's own handle on the same connection, for send
	nc     *nats.Conn
	stream jetstream.Stream
	timers jetstream.Stream
	dlq    jetstream.Stream
	index  jetstream.Stream // the search index (index.go); nil when Open found none
	opts   *options
	api    string      // JetStream API prefix, ending in "."
	trust  *trustCache // events appended or checked (check.go)
	armed  armedWaits  // step timers armed, swept when overdue (sweep.go)

	defsMu sync.Mutex
	defs   map[string]*flowDef // "flow.version": what starts are checked by

	fetchOnce sync.Once // the subscription of batched reads (check.go)
	fetch     *fetcher
	fetchErr  error
}

// entry is one event to append to a saga's log. It has no Nats-Msg-Id:
// the compare-and-set already makes an append happen once (a retry of an
// append that was stored expects a sequence the log has passed, and is
// refused), without the broker's duplicate window, its memory per message
// and its two-minute limit.
type entry struct {
	step  string
	phase Phase
	data  []byte
	apply transition // the change it records (append only)
}

// sagaTime is the saga's clock: the time a state records, and against which
// waits and deadlines are judged (WithClock).
func (j *journal) sagaTime() time.Time {
	if j.opts.clock != nil {
		return j.opts.clock().UTC().Truncate(timeUnit)
	}
	return time.Now().UTC().Truncate(timeUnit)
}

// lastMsg returns the newest message on subject (wildcards allowed) with
// its stream sequence, or ErrNotFound. It asks the nearest replica (a
// direct get), which on a cluster may lag the stream's leader. When its
// answer is older than min, the sequence of a message the caller knows is
// in the log, or it has none, the leader decides: acting on a stale state
// would drop a step's trigger or a compensation as not due.
func (j *journal) lastMsg(ctx context.Context, subject string, min uint64) (*nats.Msg, uint64, error) {
	m, seq, err := j.directLast(ctx, subject)
	if j.opts.replicas <= 1 || (err == nil && seq >= min) || (err != nil && !errors.Is(err, ErrNotFound)) {
		return m, seq, err
	}
	return j.leaderLast(ctx, subject)
}

func (j *journal) directLast(ctx context.Context, subject string) (*nats.Msg, uint64, error) {
	return j.directGet(ctx, jsutil.LastBySubject(subject), subject)
}

// direct answers a direct get request req for what: the nearest replica's.
func (j *journal) directGet(ctx context.Context, req []byte, subject string) (*nats.Msg, uint64, error) {
	resp, err := j.nc.RequestWithContext(ctx, j.api+"DIRECT.GET."+wire.Stream, req)
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
func (j *journal) leaderLast(ctx context.Context, subject string) (*nats.Msg, uint64, error) {
	return j.leader(ctx, jsutil.LastBySubject(subject), subject)
}

// leader answers a message get request req for what: the stream leader's.
func (j *journal) leader(ctx context.Context, req []byte, subject string) (*nats.Msg, uint64, error) {
	m, seq, err := jsutil.LeaderMsg(ctx, j.nc, j.api, wire.Stream, req)
	switch {
	case errors.Is(err, jsutil.ErrNoMessage):
		return nil, 0, ErrNotFound
	case err != nil:
		return nil, 0, fmt.Errorf("saga: read %s from the leader: %w", subject, err)
	}
	return m, seq, nil
}

func lastValue(h nats.Header, key string) string {
	v := h.Values(key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// send publishes m and waits for the broker's acknowledgement (or its
// refusal, or ctx's end, or the publish timeout). It publishes
// asynchronously and waits on the future: a synchronous request takes the
// connection's lock three times per message where this takes it once, and
// under load a runner's goroutines queued on that lock (a mutex profile of
// the benchmark showed it as the bottleneck).
func (j *journal) send(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
	f, err := j.pub.PublishMsgAsync(m)
	if err != nil {
		return nil, err
	}
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// newPublisher returns choreo's own JetStream handle on js's connection,
// with js's API prefix or domain, for asynchronous publishes: the
// caller's async error handlers and PublishAsyncComplete never see
// choreo's publishes.
func newPublisher(js jetstream.JetStream) (jetstream.JetStream, error) {
	o := js.Options()
	opts := []jetstream.JetStreamOpt{jetstream.WithPublishAsyncTimeout(defaultTimeout), jetstream.WithPublishAsyncMaxPending(16384)}
	switch {
	case o.Domain != "":
		return jetstream.NewWithDomain(js.Conn(), o.Domain, opts...)
	case o.APIPrefix != "" && o.APIPrefix != jetstream.DefaultAPIPrefix:
		return jetstream.NewWithAPIPrefix(js.Conn(), o.APIPrefix, opts...)
	}
	return jetstream.New(js.Conn(), opts...)
}

// deleted reports whether a message delete went through, or found the
// message gone already: not found, or, on a replicated stream where
// another reader deleted it first, "sequence not found" (10043).
func deleted(err error) bool {
	var apiErr *jetstream.APIError
	return err == nil || errors.Is(err, jetstream.ErrMsgNotFound) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == 10043) ||
		// nats.go flattens the broker's answer to a failed delete into
		// text: another reader deleted the message first.
		(errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) && strings.Contains(err.Error(), "err_code=10043"))
}

// source is where a message was read: what a dead letter records.
type origin struct {
	stream, subject string
	seq             uint64
	consumer        string
}

// scan reads every message an ordered consumer with cfg delivers now, and
// stops at the end of what was there when it began.
func (j *journal) scan(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, fn func(jetstream.Msg)) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if cfg.InactiveThreshold == 0 {
		cfg.InactiveThreshold = jsutil.ScanInactivity
	}
	cons, err := j.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return err
	}
	defer jsutil.DropOrdered(j.js, stream, cons)
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

// logMsg is one event read from the saga log by a batched direct get: its
// subject and stream sequence as the broker said (its own headers, after
// any the message carried).
type logMsg struct {
	subject string
	seq     uint64
	header  nats.Header
	data    []byte
}

// logBatch is how many events one direct get of readLog asks for.
const logBatch = 256

// readLog calls fn, in order, with every event of the saga log on filter
// (wildcards allowed) from stream sequence from on, up to sequence end (0:
// as far as the log goes), and returns the sequence to read from next. It
// reads by batched direct gets, not through a consumer, so that an identity
// that only reads sagas needs no right to create consumers (a right the
// broker cannot limit to ephemeral ones, see access.Reader). On a cluster
// the nearest replica answers, which may lag the leader a little.
func (j *journal) readLog(ctx context.Context, filter string, from, end uint64, fn func(logMsg)) (uint64, error) {
	return j.readStream(ctx, wire.Stream, filter, from, end, fn)
}

// readStream is readLog on any stream that allows direct gets: the flow
// registry's bucket too, which a reader reads without a consumer.
func (j *journal) readStream(ctx context.Context, stream, filter string, from, end uint64, fn func(logMsg)) (uint64, error) {
	inbox := j.nc.NewInbox()
	sub, err := j.nc.SubscribeSync(inbox)
	if err != nil {
		return from, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	for {
		req, _ := json.Marshal(struct {
			Seq   uint64 `json:"seq"`
			Next  string `json:"next_by_subj"`
			Batch int    `json:"batch"`
		}{max(from, 1), filter, logBatch})
		if err := j.nc.PublishRequest(j.api+"DIRECT.GET."+stream, inbox, req); err != nil {
			return from, err
		}
		n, more := 0, false
	batch:
		for {
			m, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return from, err
			}
			switch st := m.Header.Get("Status"); st {
			case "":
			case "404":
				return from, nil // nothing more on filter
			case "204": // end of the batch
				pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				more = pending > 0 && n > 0
				break batch
			default:
				return from, fmt.Errorf("read %s: status %s %s", filter, st, m.Header.Get("Description"))
			}
			seq, err := strconv.ParseUint(lastValue(m.Header, jetstream.SequenceHeader), 10, 64)
			if err != nil {
				return from, fmt.Errorf("read %s: bad sequence header", filter)
			}
			n++
			if seq < from {
				continue
			}
			if end > 0 && seq > end {
				return from, nil
			}
			from = seq + 1
			fn(logMsg{subject: lastValue(m.Header, jetstream.SubjectHeader), seq: seq, header: m.Header, data: m.Data})
		}
		if !more {
			return from, nil
		}
	}
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

const defaultTimeout = 10 * time.Second

// withTimeout applies the default timeout to a context that has none.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultTimeout)
}

// untraced reports whether a span started in ctx would be a no-op: the
// tracer is the default, no program has set a global provider, and ctx
// carries no span context to pass on. Then the runner starts none, which
// saves its allocations on every hop.
func (j *journal) untraced(ctx context.Context) bool {
	return j.opts.tracer == globalTracer && unsetProvider != nil && otel.GetTracerProvider() == unsetProvider &&
		!trace.SpanContextFromContext(ctx).IsValid()
}

// trustSize bounds the events a journal remembers as checked.
const trustSize = 1 << 14

// trust remembers, by saga and stream sequence, the state of events this
// journal appended or checked. Oldest entries go first.
type trustCache struct {
	mu   sync.Mutex
	m    map[trustID]string
	ring []trustID
	next int
}

// trustID names a saga log event: a struct, not a joined string, so that
// a look-up on every hop allocates nothing.
type trustID struct {
	flow, id string
	seq      uint64
}

func newTrust() *trustCache {
	return &trustCache{m: make(map[trustID]string, trustSize), ring: make([]trustID, trustSize)}
}

func trustKey(flow, id string, seq uint64) trustID { return trustID{flow, id, seq} }

func (t *trustCache) lookup(key trustID) (string, bool) {
	t.mu.Lock()
	raw, ok := t.m[key]
	t.mu.Unlock()
	return raw, ok
}

func (t *trustCache) remember(key trustID, raw string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[key]; ok {
		return
	}
	if old := t.ring[t.next]; old.seq != 0 {
		delete(t.m, old)
	}
	t.ring[t.next], t.m[key] = key, raw
	t.next = (t.next + 1) % len(t.ring)
}

// fetcher receives the answers to many direct gets sent at once: one
// subscription per journal, each batch on a reply subject of its own.
type fetcher struct {
	prefix string
	mu     sync.Mutex
	n      uint64
	wait   map[string]chan *nats.Msg
}
