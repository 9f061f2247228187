package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-go/choreo/internal/wire"
)

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
				if derr := j.deadLetter(ctx, flow, origin{wire.Stream, subject, seq, "load"}, m.Header, m.Data, err.Error()); derr != nil {
					return nil, 0, derr
				}
				return nil, 0, fmt.Errorf("%w: %w", ErrNotFound, err)
			case forged == nil:
				return nil, 0, err
			}
		}
		j.opts.logger.Warn("choreo: quarantining a saga log event", "flow", flow, "saga", id, "subject", subject, "seq", seq, "reason", err)
		if derr := j.deadLetter(ctx, flow, origin{wire.Stream, subject, seq, "load"}, m.Header, m.Data, err.Error()); derr != nil {
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
	if e.phase == PhaseDone {
		// A result's search attributes go first (index.go).
		if err := j.indexResult(ctx, cur, e); err != nil {
			return nil, 0, err
		}
	}
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
		t := j.sagaTime()
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

// appendDue is append for an act outside a runner's delivery (a
// completion from outside, a child's revert): on success it also tells the
// observer and publishes what the new state makes due.
func (j *journal) appendDue(ctx context.Context, cur *State, seq uint64, e entry) (*State, uint64, error) {
	was := cur.Status
	st, nseq, err := j.append(ctx, cur, seq, e)
	if err != nil {
		return st, nseq, err
	}
	j.observe(st, e.step, e.phase, was)
	return st, nseq, j.emitDue(ctx, st, nseq)
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
	if j.opts.ring != nil {
		var key string
		if key, m.Data = sealData(j.opts.ring, m.Subject, e.data); key != "" {
			m.Header[wire.Key] = []string{key}
		}
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
	j.trust.remember(trustKey(st.Flow, st.ID, ack.Sequence), raw)
	return true, ack.Sequence, nil
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

// ownTimed reports whether a step's own timer decides what happens next: it
// waits for its outcome, or its next attempt is due at WaitUntil.
func ownTimed(st *StepState) bool {
	return st != nil && (st.Status == StepWaiting || (st.Status == StepRunning && !st.WaitUntil.IsZero()))
}

// armStep sets the named step's own broker-side timer for what st says of
// it: the end of its wait, or its next attempt. The timer names the
// attempt, so that one of an earlier attempt fires for nothing; its id is
// deterministic, so arming again is harmless. Only the step's owner may.
func (j *journal) armStep(ctx context.Context, st *State, step string) error {
	s := st.Step(step)
	if !ownTimed(s) {
		return nil
	}
	attempt := strconv.Itoa(s.Attempts)
	m := &nats.Msg{
		Subject: wire.StepSchedSubject(st.Flow, st.ID, step),
		Header: nats.Header{
			nats.MsgIdHdr:          {st.Flow + "." + st.ID + "." + step + "." + string(s.Status) + "." + attempt + "." + strconv.Itoa(st.Epoch)},
			"Nats-Schedule":        {"@at " + s.WaitUntil.UTC().Format(time.RFC3339Nano)},
			"Nats-Schedule-Target": {wire.StepTimerSubject(st.Flow, st.ID, st.Version, step)},
			wire.TimerKind:         {wire.TimerStep},
			wire.Attempt:           {attempt},
		},
	}
	inject(ctx, m.Header)
	if _, err := j.send(ctx, m); err != nil {
		return fmt.Errorf("saga: timer of step %s of %s/%s: %w", step, st.Flow, st.ID, fullError(err))
	}
	j.armed.remember(st, s)
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
	if (st.Status != StatusCompleted && st.Status != StatusCompensated) || j.sagaTime().Before(st.EndedAt.Add(j.opts.retention)) {
		return nil
	}
	// Its search attributes first: a saga that stands keeps them.
	if err := j.unindex(ctx, flow, st.Version, id); err != nil {
		return fmt.Errorf("saga: expire %s/%s: search index: %w", flow, id, err)
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

// deadPrefix is how much of a payload a dead letter keeps.
const deadPrefix = 16 * 1024

// deadLetter copies a message to the dead-letter stream with the reason,
// under the name of the identity that writes it (its inbox prefix's).
// The copy's id derives from the original's stream, sequence and reader,
// so a reader copying the same message twice stores one.
func (j *journal) deadLetter(ctx context.Context, flow string, src origin, h nats.Header, data []byte, reason string) error {
	if !wire.Token(flow) {
		flow = "_"
	}
	m := nats.NewMsg(wire.DeadLetterSubject(flow, wire.IdentityOf(j.nc.Opts.InboxPrefix)))
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
	// Never amplify: the copy holds the payload's size, its hash and at
	// most deadPrefix bytes of it, however big the message was.
	sum := sha256.Sum256(data)
	m.Header.Set(wire.DeadSize, strconv.Itoa(len(data)))
	m.Header.Set(wire.DeadHash, "sha256:"+hex.EncodeToString(sum[:]))
	m.Data = data[:min(len(data), deadPrefix)]
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
	subject := wire.LogSubject(flow, id, version, step, string(phase))
	m, _, err := j.lastMsg(ctx, subject, 1) // it is in the log
	if err != nil {
		return nil, fmt.Errorf("saga: %s/%s: read %s %s: %w", flow, id, step, phase, err)
	}
	data, err := openData(j.opts.ring, m.Header, subject, m.Data)
	if err != nil {
		return nil, fmt.Errorf("saga: %s/%s: read %s %s: %w", flow, id, step, phase, err)
	}
	return data, nil
}

// startSpan opens the span of a saga's start.
func (j *journal) startSpan(ctx context.Context, f *flowDef, id string) (context.Context, trace.Span) {
	if j.untraced(ctx) {
		return ctx, trace.SpanFromContext(ctx)
	}
	ctx, sp := j.opts.tracer.Start(ctx, f.name+" start", trace.WithSpanKind(trace.SpanKindProducer))
	if sp.IsRecording() {
		sp.SetAttributes(AttrFlow.String(f.name), AttrVersion.Int(f.version), AttrSaga.String(id),
			AttrStep.String(wire.SagaStep), AttrPhase.String(string(PhaseStart)))
	}
	return ctx, sp
}

// observe reports an event appended by this process to the observer.
func (j *journal) observe(st *State, step string, phase Phase, was Status) {
	if o := j.opts.observer; o != nil && st != nil {
		o.Recorded(Record{Flow: st.Flow, Version: st.Version, ID: st.ID, Step: step, Phase: phase, Status: st.Status,
			Ended: st.Status.Terminal() && st.Status != was})
	}
}
