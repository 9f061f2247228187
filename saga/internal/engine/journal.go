package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
	opts   *options
	api    string // JetStream API prefix, ending in "."
	trust  *trust // events appended or checked (check.go)

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

// transition is a change to a saga's state at time now.
type transition func(s *State, now time.Time) error

func now() time.Time { return time.Now().UTC().Truncate(timeUnit) }

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
	return j.direct(ctx, jsutil.LastBySubject(subject), subject)
}

// direct answers a direct get request req for what: the nearest replica's.
func (j *journal) direct(ctx context.Context, req []byte, subject string) (*nats.Msg, uint64, error) {
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

// load returns a saga's current state and the stream sequence of its
// newest event, no older than the event at sequence min. A newest event
// that choreo did not append (a client publishing on the saga's subjects
// without compare-and-set) is dead-lettered and deleted so that it cannot
// stand for the state.
func (j *journal) load(ctx context.Context, flow, id string, min uint64) (*State, uint64, error) {
	for range 16 {
		m, seq, err := j.lastMsg(ctx, wire.LogWildcard(flow, id), min)
		if err != nil {
			return nil, 0, err
		}
		subject := lastValue(m.Header, jetstream.SubjectHeader)
		env, err := parseEnvelope(subject, m.Header, m.Data, 1<<30)
		if err == nil {
			if why := rogue(m.Header, env, 1); why != "" {
				err = bad("%s", why)
			}
		}
		if err == nil {
			err = j.vouch(ctx, env, m.Header, seq)
			var forged *forgedError
			switch {
			case err == nil:
				return env.state, seq, nil
			case errors.As(err, &forged) && forged.missing && env.state.Status.Terminal():
				// Its expiry deleted the events before it: the saga is gone.
				return nil, 0, ErrNotFound
			case forged != nil && forged.start:
				// Refused, not deleted: this reader's definition of the flow
				// may be the wrong one.
				j.opts.logger.Error("choreo: a saga's start does not match the flow as defined here", "flow", flow, "saga", id, "seq", seq, "reason", err)
				if derr := j.deadLetter(ctx, flow, source{wire.Stream, subject, seq, "load"}, m.Header, m.Data, err.Error()); derr != nil {
					return nil, 0, derr
				}
				return nil, 0, fmt.Errorf("%w: %w", ErrNotFound, err)
			case forged == nil:
				return nil, 0, err
			}
		}
		j.opts.logger.Warn("choreo: quarantining a saga log event", "flow", flow, "saga", id, "subject", subject, "seq", seq, "reason", err)
		if derr := j.deadLetter(ctx, flow, source{wire.Stream, subject, seq, "load"}, m.Header, m.Data, err.Error()); derr != nil {
			return nil, 0, derr
		}
		if derr := j.stream.DeleteMsg(ctx, seq); !deleted(derr) {
			return nil, 0, fmt.Errorf("saga: delete rogue event %d: %w", seq, derr)
		}
	}
	return nil, 0, fmt.Errorf("saga: saga %s/%s: too many rogue events", flow, id)
}

// append applies e's transition to the saga's state cur, whose newest
// event is at sequence seq, and appends e carrying the result, with
// compare-and-set on the saga's log. On a lost race it reads the state
// again and re-applies. It returns the state it leaves (the current one,
// with errNoop, when the transition does not apply) and its sequence.
func (j *journal) append(ctx context.Context, cur *State, seq uint64, e entry) (*State, uint64, error) {
	flow, id := cur.Flow, cur.ID
	var min uint64 // after a lost race: the log is past seq
	for range 64 {
		if cur == nil {
			var err error
			if cur, seq, err = j.load(ctx, flow, id, min); err != nil {
				return nil, 0, err
			}
		}
		next := cur.clone()
		next.Events++
		next.follow(seq)
		t := now()
		if err := e.apply(next, t); err != nil {
			return cur, seq, err
		}
		next.settle(t)
		ok, nseq, err := j.publish(ctx, next, seq, e)
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

// publish appends one event to a saga's log, expecting its newest event at
// sequence last, and returns the event's sequence. It returns false when
// another event won the race.
func (j *journal) publish(ctx context.Context, st *State, last uint64, e entry) (bool, uint64, error) {
	raw := string(encodeState(st))
	m := &nats.Msg{
		Subject: wire.LogSubject(st.Flow, st.ID, st.Version, e.step, string(e.phase)),
		Header: nats.Header{
			jetstream.ExpectedLastSubjSeqHeader:     {strconv.FormatUint(last, 10)},
			jetstream.ExpectedLastSubjSeqSubjHeader: {wire.LogWildcard(st.Flow, st.ID)},
			wire.State:                              {raw},
		},
		Data: e.data,
	}
	inject(ctx, m.Header)
	ack, err := j.send(ctx, m)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return false, 0, nil
		}
		return false, 0, fmt.Errorf("saga: append %s: %w", m.Subject, fullError(err))
	}
	j.trust.add(trustKey(st.Flow, st.ID, ack.Sequence), raw)
	return true, ack.Sequence, nil
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

// emitDue publishes what st makes due: the compensation commands, and for
// a saga that ended, the timer that expires its log after the retention.
// Their ids are deterministic, so emitting again is harmless.
func (j *journal) emitDue(ctx context.Context, st *State, seq uint64) error {
	for _, name := range st.dueUndo() {
		m := &nats.Msg{
			Subject: wire.CmdSubject(st.Flow, st.ID, st.Version, name),
			Header: nats.Header{
				nats.MsgIdHdr: {st.Flow + "." + st.ID + "." + name + ".undo." + strconv.Itoa(st.Epoch)},
				// Its reader must not judge it by a state older than this one.
				wire.After: {strconv.FormatUint(seq, 10)},
			},
		}
		if st.Epoch > 0 {
			m.Header.Set(wire.Epoch, strconv.Itoa(st.Epoch))
		}
		inject(ctx, m.Header)
		if _, err := j.send(ctx, m); err != nil {
			return fmt.Errorf("saga: command %s: %w", m.Subject, err)
		}
	}
	if j.opts.retention > 0 && (st.Status == StatusCompleted || st.Status == StatusCompensated) {
		// The saga's one schedule: it replaces a deadline still pending.
		at := st.EndedAt.Add(j.opts.retention)
		if err := j.schedule(ctx, st, wire.TimerExpire, at, st.Flow+"."+st.ID+".expire."+strconv.Itoa(st.Epoch)); err != nil {
			return err
		}
	}
	return nil
}

// schedule sets the saga's one broker-side timer to fire at the given time.
func (j *journal) schedule(ctx context.Context, st *State, kind string, at time.Time, msgID string) error {
	m := &nats.Msg{
		Subject: wire.SchedSubject(st.Flow, st.ID),
		Header: nats.Header{
			nats.MsgIdHdr:          {msgID},
			"Nats-Schedule":        {"@at " + at.UTC().Format(time.RFC3339Nano)},
			"Nats-Schedule-Target": {wire.TimerSubject(st.Flow, st.ID, st.Version)},
			wire.TimerKind:         {kind},
		},
	}
	inject(ctx, m.Header)
	if _, err := j.send(ctx, m); err != nil {
		return fmt.Errorf("saga: schedule %s of %s/%s: %w", kind, st.Flow, st.ID, fullError(err))
	}
	return nil
}

// expire removes an ended saga's log and commands once its retention has
// passed. A saga that is not over (an operator resumed it) is left alone.
// Messages are deleted one by one, never purged: a purge would make the
// broker recount every consumer's pending messages over the whole stream,
// which grows with the sagas retained, and a service's identity may not
// purge a stream (Permissions). The log's events are found by the
// sequences the state lists; commands, which exist only where something
// was compensated, and the events of a saga too long to list, by direct
// gets.
func (j *journal) expire(ctx context.Context, flow, id string) error {
	st, seq, err := j.load(ctx, flow, id, 0)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if (st.Status != StatusCompleted && st.Status != StatusCompensated) || time.Now().Before(st.EndedAt.Add(j.opts.retention)) {
		return nil
	}
	if st.overflow {
		// Too many events to list: everything on the saga's subjects.
		if err := j.deleteAll(ctx, "choreo.*."+flow+"."+id+".>"); err != nil {
			return fmt.Errorf("saga: expire %s/%s: %w", flow, id, err)
		}
		return nil
	}
	if st.Status == StatusCompensated || st.Epoch > 0 {
		if err := j.deleteAll(ctx, wire.Cmd+flow+"."+id+".>"); err != nil {
			return fmt.Errorf("saga: expire %s/%s: %w", flow, id, err)
		}
	}
	// The newest goes last: until then the saga reads as it was.
	for _, q := range append(st.earlier, seq) {
		if err := j.stream.DeleteMsg(ctx, q); !deleted(err) {
			return fmt.Errorf("saga: expire %s/%s: delete %d: %w", flow, id, q, err)
		}
	}
	return nil
}

// deleteAll deletes every message of the saga stream on subject (which
// may hold wildcards), oldest first, each found by a direct get.
func (j *journal) deleteAll(ctx context.Context, subject string) error {
	from := uint64(1)
	for {
		req := []byte(`{"seq":` + strconv.FormatUint(from, 10) + `,"next_by_subj":` + strconv.Quote(subject) + `}`)
		resp, err := j.nc.RequestWithContext(ctx, j.api+"DIRECT.GET."+wire.Stream, req)
		if err != nil {
			return fmt.Errorf("read %s: %w", subject, err)
		}
		switch st := resp.Header.Get("Status"); st {
		case "":
		case "404":
			return nil
		default:
			return fmt.Errorf("read %s: status %s %s", subject, st, resp.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(lastValue(resp.Header, jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return fmt.Errorf("read %s: bad sequence header", subject)
		}
		if err := j.stream.DeleteMsg(ctx, seq); !deleted(err) {
			return fmt.Errorf("delete %d: %w", seq, err)
		}
		from = seq + 1
	}
}

// deleted reports whether a message delete went through, or found the
// message gone already: not found, or, on a replicated stream where
// another reader deleted it first, "sequence not found" (10043).
func deleted(err error) bool {
	var apiErr *jetstream.APIError
	return err == nil || errors.Is(err, jetstream.ErrMsgNotFound) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == 10043)
}

// source is where a message was read: what a dead letter records.
type source struct {
	stream, subject string
	seq             uint64
	consumer        string
}

// deadLetter copies a message to the dead-letter stream with the reason.
// The copy's id derives from the original's stream, sequence and reader,
// so a reader copying the same message twice stores one.
func (j *journal) deadLetter(ctx context.Context, flow string, src source, h nats.Header, data []byte, reason string) error {
	if !wire.Token(flow) {
		flow = "_"
	}
	m := nats.NewMsg(wire.Dead + flow)
	m.Header = nats.Header{}
	for k, vs := range h {
		if strings.HasPrefix(strings.ToLower(k), "nats-") {
			continue
		}
		m.Header[k] = slices.Clone(vs)
	}
	m.Header.Set(wire.DeadReason, reason)
	m.Header.Set(wire.DeadSubject, src.subject)
	m.Header.Set(wire.DeadSequence, strconv.FormatUint(src.seq, 10))
	m.Header.Set(wire.DeadConsumer, src.consumer)
	m.Header.Set(wire.DeadTime, time.Now().UTC().Format(time.RFC3339Nano))
	m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("dlq.%s.%d.%s", src.stream, src.seq, src.consumer))
	m.Data = data
	if _, err := j.send(ctx, m); err != nil {
		return fmt.Errorf("saga: dead-letter: %w", err)
	}
	if j.opts.observer != nil {
		j.opts.observer.DeadLettered(flow, reason)
	}
	return nil
}

// eventData returns the payload of a saga's newest event on step/phase.
func (j *journal) eventData(ctx context.Context, flow string, version int, id, step string, phase Phase) ([]byte, error) {
	m, _, err := j.lastMsg(ctx, wire.LogSubject(flow, id, version, step, string(phase)), 1) // it is in the log
	if err != nil {
		return nil, fmt.Errorf("saga: %s/%s: read %s %s: %w", flow, id, step, phase, err)
	}
	return m.Data, nil
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

// fullError marks the broker's refusal of a write to a full stream.
func fullError(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (strings.Contains(apiErr.Description, "maximum messages") || strings.Contains(apiErr.Description, "maximum bytes") ||
		strings.Contains(apiErr.Description, "insufficient resources")) {
		return fmt.Errorf("%w: %w", ErrStreamFull, err)
	}
	return err
}
