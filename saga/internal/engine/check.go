package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// define lets the journal check the starts of f's sagas.
func (j *journal) define(f *flowDef) {
	if f == nil {
		return
	}
	j.defsMu.Lock()
	defer j.defsMu.Unlock()
	if j.defs == nil {
		j.defs = map[string]*flowDef{}
	}
	j.defs[f.name+"."+strconv.Itoa(f.version)] = f
}

// defineRef is define for the flow f refers to, when it has a definition.
func (j *journal) defineRef(f FlowRef) {
	if f != nil {
		_, def := f.flowRef()
		j.define(def)
	}
}

// def returns the definition of a flow version this journal was given,
// or else one defined in the process (every version a build compiles in).
func (j *journal) def(flow string, version int) *flowDef {
	j.defsMu.Lock()
	d := j.defs[flow+"."+strconv.Itoa(version)]
	j.defsMu.Unlock()
	if d == nil {
		d = versions.get(flow, version)
	}
	return d
}

// link is one event on the walk back.
type link struct {
	seq, prev uint64
	env       *envelope
	raw       string
}

func linkOf(env *envelope, h nats.Header, seq uint64) (link, error) {
	prev, err := strconv.ParseUint(h.Get(jetstream.ExpectedLastSubjSeqHeader), 10, 64)
	if err != nil {
		return link{}, &forgedError{seq: seq, why: fmt.Sprintf("event %d has a malformed compare-and-set sequence", seq)}
	}
	return link{seq: seq, prev: prev, env: env, raw: h.Get(wire.State)}, nil
}

// vouch checks that the log event at seq, read as env with headers h,
// follows from its saga's log. It returns nil, a *forgedError, or the
// broker's error (the caller tries again later).
//
// It does not replay the whole saga on every read. It checks the event
// against the state of the one before it, and walks further back only
// while the events it has checked could all have been appended by one
// identity: an event's appender is known from its subject, since the
// broker lets only a step's owner append on that step's subjects
// (access.Permissions), while a saga's own events (its deadline, a
// scheduled begin, an operator's act) could be anyone's. The walk stops
// at an event whose appender is known and is not the one identity that
// could have appended everything checked after it. That appender, if
// honest, checked the whole log before appending (every runner checks
// the event it appends after, this way); if it is not honest, then the
// identity that appended what came after is, and checked it. So with at
// most one identity forging, every event of the log has been checked by
// an honest reader, and a forger that owns two consecutive steps is
// still caught: the walk goes through both its events. A flow whose
// steps declare no owner, or one this reader has no definition of, is
// replayed from its start, as before. (WithUncheckedEvents and a broker
// without the derived permissions are outside this argument; docs/security.md.)
func (j *journal) vouch(ctx context.Context, env *envelope, h nats.Header, seq uint64) error {
	if j.opts.unchecked {
		return nil
	}
	if raw, ok := j.trust.lookup(trustKey(env.flow, env.id, seq)); ok && raw == h.Get(wire.State) {
		return nil // the hot path: this journal appended or checked it
	}
	first, err := linkOf(env, h, seq)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	chain := []link{first}
	run := j.appender(env) // the one identity that could have appended the chain; "" while any could
	var base *State
	var baseSeq uint64
	var read map[uint64]*nats.Msg // the saga's log before the event, once read
	for base == nil {
		l := chain[len(chain)-1]
		if l.env.phase == PhaseStart {
			if why := j.checkStart(l); why != "" {
				err := j.forged(chain, len(chain)-1, why)
				err.(*forgedError).start = true
				return err
			}
			// Without the version's definition (a tool that knows the flow
			// by name only) the start cannot be checked; what follows it
			// still is, but nothing is trusted for later reads.
			known := j.def(l.env.flow, l.env.state.Version) != nil
			if known {
				j.trust.remember(trustKey(env.flow, env.id, l.seq), l.raw)
			}
			base, baseSeq, chain = l.env.state, l.seq, chain[:len(chain)-1]
			if !known {
				return j.replayChain(env, chain, base, baseSeq, false)
			}
			break
		}
		if raw, ok := j.trust.lookup(trustKey(env.flow, env.id, l.prev)); ok {
			if base, err = decodeState(env.flow, env.id, raw); err != nil {
				return err
			}
			baseSeq = l.prev
			break
		}
		if len(chain) > 4*maxEarlier {
			return fmt.Errorf("saga: check %s/%s: more than %d events to read back", env.flow, env.id, len(chain))
		}
		if read == nil && len(chain) > 1 {
			// Past the event before: one read of the saga's log up to it,
			// rather than a read per event walked back.
			if read, err = j.logBefore(ctx, env, seq); err != nil {
				return err
			}
		}
		m, ok := read[l.prev]
		if !ok { // the event before, or one not read (a replica that lags, or a longer log): ask for it
			m, err = j.msgAt(ctx, l.prev)
		}
		if errors.Is(err, ErrNotFound) {
			return &forgedError{seq: seq, missing: true, why: fmt.Sprintf("event %d follows event %d, which is not in the log", l.seq, l.prev)}
		}
		if err != nil {
			return err
		}
		subject := lastValue(m.Header, jetstream.SubjectHeader)
		penv, err := parseEnvelope(subject, m.Header, m.Data, 1<<30)
		if err == nil && (penv.flow != env.flow || penv.id != env.id) {
			err = bad("it is on %s", subject)
		}
		if err == nil {
			if why := rogue(m.Header, penv, 1); why != "" {
				err = bad("%s", why)
			}
		}
		if err != nil {
			return &forgedError{seq: seq, why: fmt.Sprintf("event %d follows event %d, which is not this saga's: %v", l.seq, l.prev, err)}
		}
		pl, err := linkOf(penv, m.Header, l.prev)
		if err != nil {
			return err
		}
		switch by := j.appender(penv); {
		case by != "" && run != "" && by != run:
			// Another identity appended it, and checked the log up to it.
			base, baseSeq = penv.state, pl.seq
		case by != "" && run == "":
			run = by
			chain = append(chain, pl)
		default:
			chain = append(chain, pl)
		}
	}
	return j.replayChain(env, chain, base, baseSeq, true)
}

// appender is the identity the broker lets append env's event: the owner
// of its step as the flow version defines it. It is "" for the saga's
// own events (several identities may append them), for a step without an
// owner, and for a flow this journal has no definition of.
func (j *journal) appender(env *envelope) string {
	if env.step == wire.SagaStep {
		return ""
	}
	def := j.def(env.flow, env.version)
	if def == nil {
		return ""
	}
	if d := def.byName[env.step]; d != nil {
		return d.owner
	}
	return ""
}

// replayChain replays the events of chain, oldest last, on base (the
// state at baseSeq): each must carry the state its step and phase make of
// the one before. trust adds each to the events this journal trusts.
func (j *journal) replayChain(env *envelope, chain []link, base *State, baseSeq uint64, trust bool) error {
	for i := len(chain) - 1; i >= 0; i-- {
		l := chain[i]
		next, err := replay(base, baseSeq, l.env, j.sagaTime())
		if err == nil && string(encodeState(next)) != l.raw {
			err = errors.New("its state changes more than its step and phase may")
		}
		if err != nil {
			return j.forged(chain, i, fmt.Sprintf("%s:%s (event %d): %v", l.env.step, l.env.phase, l.seq, err))
		}
		if trust {
			j.trust.remember(trustKey(env.flow, env.id, l.seq), l.raw)
		}
		base, baseSeq = next, l.seq
	}
	return nil
}

// forged reports the event at chain[i] and, for the event checked, that
// it follows it.
func (j *journal) forged(chain []link, i int, why string) error {
	if i == 0 {
		return &forgedError{seq: chain[0].seq, why: why}
	}
	return &forgedError{seq: chain[0].seq, why: fmt.Sprintf("event %d follows forged event %d: %s", chain[0].seq, chain[i].seq, why)}
}

// checkStart says what is wrong with a start, or "".
func (j *journal) checkStart(l link) string {
	if l.prev != 0 {
		return fmt.Sprintf("start (event %d) follows event %d", l.seq, l.prev)
	}
	st := l.env.state
	def := j.def(l.env.flow, st.Version)
	if def == nil {
		return ""
	}
	// The deadline is the starter's to set (a deployment may shorten it);
	// the steps, their kinds and order, and everything else are the flow's.
	// A saga started for later triggers nothing and has no deadline until
	// it begins, after it was recorded.
	want := newState(def, l.env.id, st.StartedAt)
	if st.Status == StatusScheduled {
		if !st.Scheduled.After(st.StartedAt) {
			return fmt.Sprintf("start (event %d) is scheduled to begin before it was recorded", l.seq)
		}
		want = newScheduled(def, l.env.id, st.StartedAt, st.Scheduled)
	}
	if !st.Deadline.IsZero() && !st.Deadline.After(st.StartedAt) {
		return fmt.Sprintf("start (event %d) has a deadline before it started", l.seq)
	}
	if want.Status != StatusScheduled {
		want.Deadline = st.Deadline
	}
	want.TraceID = st.TraceID // the starter's too; the codec checked its form
	want.Parent = st.Parent   // a child saga's: whose end settles the parent's step (children.go)
	if string(encodeState(want)) != l.raw {
		return fmt.Sprintf("start (event %d) is not the initial state of flow %s v%d as defined here (a forged start, or two definitions of one version)", l.seq, def.name, def.version)
	}
	return ""
}

// clockSkew is how far the clocks of the broker and of the processes may
// differ.
const clockSkew = time.Minute

// replay applies what env records to the state before it, at sequence
// seq: the transition its step and phase name, with the step's attempts,
// error and time taken from the state env carries. readAt is the
// reader's time.
func replay(prev *State, seq uint64, env *envelope, readAt time.Time) (*State, error) {
	claim := env.state
	t := claim.UpdatedAt
	next := prev.clone()
	next.Events++
	next.follow(seq)
	var st StepState
	if env.step != wire.SagaStep {
		c := claim.Step(env.step)
		if c == nil || next.Step(env.step) == nil {
			return nil, fmt.Errorf("no step %q", env.step)
		}
		st = *c
	}
	var err error
	switch env.phase {
	case PhaseDone:
		err = next.complete(env.step, st.Attempts, t)
		if err == nil && claim.Status == StatusCompensating {
			next.compensate(claim.Reason) // a late result, compensated
		}
	case PhaseFailed:
		err = next.fail(env.step, st.Attempts, st.Error, t)
	case PhaseTimedOut:
		err = next.timeOut(env.step, st.Attempts, st.Error, t)
	case PhaseAbandoned:
		err = next.abandon(env.step, t)
	case PhaseSkipped:
		err = next.skip(env.step, t)
	case PhaseRetry:
		if st.WaitUntil.IsZero() {
			err = next.retrying(env.step, st.Attempts, st.Error)
		} else {
			err = next.retryWait(env.step, st.Attempts, st.Error, st.WaitUntil)
		}
	case PhaseWaiting:
		// The owner sets the wait's end; it cannot end before it began.
		if !st.WaitUntil.After(t) || st.WaitingOn == "" {
			return nil, errors.New("a wait must end after it begins and name whom it waits on")
		}
		err = next.startWait(env.step, st.Attempts, st.WaitUntil, st.WaitingOn)
	case PhaseCompensated:
		err = next.compensated(env.step, st.CompensationAttempts, t)
	case PhaseCompensationRetry:
		err = next.compRetrying(env.step, st.CompensationAttempts, st.CompensationError)
	case PhaseParked:
		err = next.park(env.step, st.CompensationAttempts, st.CompensationError, t)
	case PhaseDeadline:
		// The broker's scheduler fires it, by its clock: the reader's may
		// differ by a little, not by more. A deadline recorded early (a
		// schedule set by a participant, say) does not stand.
		if readAt.Before(next.Deadline.Add(-clockSkew)) {
			return nil, fmt.Errorf("the saga's deadline is %s, not yet passed", next.Deadline.Format(time.RFC3339))
		}
		at := t
		if at.Before(next.Deadline) {
			at = next.Deadline
		}
		err = next.expire(at)
	case PhaseBegin:
		// Fired by the broker's scheduler at the saga's time, as a
		// deadline is: a begin recorded early (by a participant that
		// appends it at once, say) does not stand. Its deadline counts
		// from then.
		if readAt.Before(next.Scheduled.Add(-clockSkew)) || t.Before(next.Scheduled.Add(-clockSkew)) {
			return nil, fmt.Errorf("the saga begins at %s, not yet", next.Scheduled.Format(time.RFC3339))
		}
		if !claim.Deadline.IsZero() && !claim.Deadline.After(next.Scheduled) {
			return nil, fmt.Errorf("its deadline %s is before the saga begins", claim.Deadline.Format(time.RFC3339))
		}
		at := t
		if at.Before(next.Scheduled) {
			at = next.Scheduled
		}
		err = next.commence(at, claim.Deadline)
	case PhaseResume:
		err = next.retryParked()
	case PhaseReverted:
		// Only a completed child saga whose steps are all compensatable:
		// a saga with no parent, or one that ran a pivot, never reverts.
		err = next.revert()
	case PhaseCancelled:
		if err = next.cancel(claim.Reason); err != nil {
			err = errNoop
		}
	case PhasePaused, PhaseUnpaused, PhaseHeld, PhaseNoted:
		err = replayPause(next, env.phase, env.step, claim, t)
	default:
		err = fmt.Errorf("phase %s is not recorded after a start", env.phase)
	}
	if errors.Is(err, errNoop) {
		return nil, errors.New("it does not apply to the state before it")
	}
	if err != nil {
		return nil, err
	}
	next.settle(t)
	return next, nil
}

// msgAt returns the saga log message at stream sequence seq, or
// ErrNotFound; on a cluster, a replica that lacks it defers to the leader.
func (j *journal) msgAt(ctx context.Context, seq uint64) (*nats.Msg, error) {
	req := []byte(`{"seq":` + strconv.FormatUint(seq, 10) + `}`)
	m, _, err := j.directGet(ctx, req, "event "+strconv.FormatUint(seq, 10))
	if errors.Is(err, ErrNotFound) && j.opts.replicas > 1 {
		m, _, err = j.leader(ctx, req, "event "+strconv.FormatUint(seq, 10))
	}
	return m, err
}

// logBefore reads the events of env's saga before stream sequence seq
// that this journal does not trust yet, by sequence: the ones its state
// lists after the newest trusted one, with a direct get each, all sent at
// once and answered on one subscription (a batched get by subject made the
// broker scan every other saga's events between them).
func (j *journal) logBefore(ctx context.Context, env *envelope, seq uint64) (map[uint64]*nats.Msg, error) {
	st := env.state
	if st.overflow || len(st.earlier) == 0 {
		return map[uint64]*nats.Msg{}, nil // read one by one
	}
	from := 0
	for i := len(st.earlier) - 1; i >= 0; i-- {
		if _, ok := j.trust.lookup(trustKey(env.flow, env.id, st.earlier[i])); ok {
			from = i + 1
			break
		}
	}
	want := st.earlier[from:]
	out := make(map[uint64]*nats.Msg, len(want))
	if len(want) == 0 {
		return out, nil
	}
	f, err := j.fetcher()
	if err != nil {
		return nil, err
	}
	reply, ch, done := f.expect(len(want))
	defer done()
	for _, q := range want {
		if err := j.nc.PublishRequest(j.api+"DIRECT.GET."+wire.Stream, reply, []byte(`{"seq":`+strconv.FormatUint(q, 10)+`}`)); err != nil {
			return nil, fmt.Errorf("saga: read %s/%s: %w", env.flow, env.id, err)
		}
	}
	for range want {
		select {
		case m := <-ch:
			switch st := m.Header.Get("Status"); st {
			case "":
			case "404":
				continue // not there: the walk says what that means
			default:
				return nil, fmt.Errorf("saga: read %s/%s: status %s %s", env.flow, env.id, st, m.Header.Get("Description"))
			}
			q, err := strconv.ParseUint(lastValue(m.Header, jetstream.SequenceHeader), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("saga: read %s/%s: bad sequence header", env.flow, env.id)
			}
			out[q] = m
		case <-ctx.Done():
			return nil, fmt.Errorf("saga: read %s/%s: %w", env.flow, env.id, ctx.Err())
		}
	}
	return out, nil
}

func (j *journal) fetcher() (*fetcher, error) {
	j.fetchOnce.Do(func() {
		f := &fetcher{prefix: j.nc.NewInbox() + ".", wait: map[string]chan *nats.Msg{}}
		_, j.fetchErr = j.nc.Subscribe(f.prefix+"*", func(m *nats.Msg) {
			f.mu.Lock()
			ch := f.wait[m.Subject[len(f.prefix):]]
			f.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default: // more answers than asked for: not ours to keep
				}
			}
		})
		j.fetch = f
	})
	if j.fetchErr != nil {
		return nil, fmt.Errorf("saga: subscribe for reads: %w", j.fetchErr)
	}
	return j.fetch, nil
}

// expect registers a batch of n answers: the reply subject to send them
// to, where they arrive, and what to call once done with them.
func (f *fetcher) expect(n int) (string, <-chan *nats.Msg, func()) {
	ch := make(chan *nats.Msg, n)
	f.mu.Lock()
	f.n++
	token := strconv.FormatUint(f.n, 36)
	f.wait[token] = ch
	f.mu.Unlock()
	return f.prefix + token, ch, func() {
		f.mu.Lock()
		delete(f.wait, token)
		f.mu.Unlock()
	}
}

// vouched is vouch for a reader that skips what does not check:
// it reports whether the event may stand for its saga's state.
func (j *journal) vouched(ctx context.Context, env *envelope, h nats.Header, seq uint64) bool {
	return j.vouch(ctx, env, h, seq) == nil
}
