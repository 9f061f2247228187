package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// delivery is one message a runner's consumer delivered, with where it
// came from, what it says, and how it ends: recorded and acknowledged,
// rejected to the dead letters, or left for redelivery.
type delivery struct {
	j          *journal
	onRecorded []func(st *State, step string, phase Phase) // the runner's WithOnRecorded hooks
	m          *liveMsg
	src        origin
	flow       *flowDef
	delivered  int       // 1 on the first delivery
	stored     time.Time // when the broker stored it
	env        *envelope // set by parse
	obs        observed  // its trace and handler call, for the logs (observe.go)
}

func newDelivery(j *journal, onRecorded []func(*State, string, Phase), m *liveMsg, consumer string, f *flowDef) *delivery {
	d := &delivery{j: j, onRecorded: onRecorded, m: m, flow: f, delivered: 1, src: origin{subject: m.Subject(), consumer: consumer}}
	if md, err := m.Metadata(); err == nil {
		d.src.stream, d.src.seq = md.Stream, md.Sequence.Stream
		d.delivered, d.stored = int(md.NumDelivered), md.Timestamp
	}
	return d
}

// parse reads the envelope; a message that has none is rejected.
func (d *delivery) parse(ctx context.Context) bool {
	if err := d.read(); err != nil {
		d.reject(ctx, err.Error())
		return false
	}
	return true
}

// read reads the envelope, or says why there is none.
func (d *delivery) read() error {
	env, err := parseEnvelope(d.m.Subject(), d.m.Headers(), d.m.Data(), d.j.opts.maxEventSize)
	if err == nil && env.flow != d.flow.name {
		err = bad("flow %q on a consumer of flow %q", env.flow, d.flow.name)
	}
	if err == nil && d.flow.version != 0 && env.version != d.flow.version {
		err = bad("flow %s v%d on a consumer of v%d", env.flow, env.version, d.flow.version)
	}
	if err != nil {
		return err
	}
	d.env = env
	return nil
}

// debug reports whether debug lines are logged: the hot path builds none
// otherwise.
func (d *delivery) debug() bool {
	return d.j.opts.logger.Enabled(context.Background(), slog.LevelDebug)
}

// ended reads a log event that may end its saga, for the readers of
// ends (OnEnd, a child saga's parent): the state it carries, or nil when
// it has dealt with the message (rejected what choreo did not append, or
// acknowledged an event whose saga has not ended).
func (d *delivery) ended(ctx context.Context) *State {
	if !d.parse(ctx) {
		return nil
	}
	if why := rogue(d.m.Headers(), d.env, 0); why != "" {
		d.reject(ctx, why)
		return nil
	}
	if !d.env.state.Status.Terminal() {
		_ = d.m.Ack()
		return nil
	}
	return d.env.state
}

// state reads the saga's state no older than the log event at sequence
// min. When it cannot, it has dealt with the message (dead-lettered for an
// unknown saga, left for redelivery on a broker error) and returns false.
func (d *delivery) state(ctx context.Context, min uint64) (*State, uint64, bool) {
	cur, seq, err := d.j.load(ctx, d.env.flow, d.env.id, min)
	if errors.Is(err, ErrNotFound) {
		d.reject(ctx, "unknown saga "+d.env.id)
		return nil, 0, false
	}
	if err != nil {
		d.retryLater(err)
		return nil, 0, false
	}
	return cur, seq, true
}

// vouch checks that the log event delivered follows from its saga's log
// (check.go). When it does not, it has dealt with the message
// (dead-lettered as forged, or left for redelivery on a broker error) and
// returns false.
func (d *delivery) vouch(ctx context.Context) bool {
	err := d.j.vouch(ctx, d.env, d.m.Headers(), d.src.seq)
	var forged *forgedError
	switch {
	case err == nil:
		return true
	case errors.As(err, &forged):
		d.reject(ctx, err.Error())
	default:
		d.retryLater(err)
	}
	return false
}

// record appends what v decides on the saga's log, starting from cur at
// sequence seq, publishes what the result makes due, and settles the
// message. A transition that no longer applies is not an error: someone
// else recorded the outcome first. input is what v.deadLetter copies.
func (d *delivery) record(ctx context.Context, cur *State, seq uint64, step string, v verdict, input []byte) {
	j := d.j
	if v.deadLetter != "" {
		// A step's input is plain: its copy is sealed (crypt.go). The
		// message's own payload is copied as it is.
		h, data := d.m.Headers(), input
		if own := d.m.Data(); len(input) == 0 || len(own) == 0 || &input[0] != &own[0] {
			h, data = sealCopy(j.opts.ring, h, d.src.subject, input)
		}
		if err := j.deadLetter(ctx, d.flow.name, d.src, h, data, v.deadLetter); err != nil {
			d.retryLater(err)
			return
		}
		d.log().Warn("choreo: dead-lettered a step's input", "reason", v.deadLetter)
	}
	st, stSeq, err := j.append(ctx, cur, seq, entry{step: step, phase: v.phase, data: v.data, apply: v.apply})
	if v.retryIn > 0 {
		// A retry's record is for the people watching; the redelivery
		// happens whether or not it was written.
		if err != nil && !errors.Is(err, errNoop) {
			d.log().Warn("choreo: record a retry", "err", err)
		}
		if err == nil {
			d.recorded(st, cur.Status, step, v)
		}
		_ = d.m.NakWithDelay(v.retryIn)
		return
	}
	if err != nil && !errors.Is(err, errNoop) {
		d.retryLater(err)
		return
	}
	if err == nil {
		d.recorded(st, cur.Status, step, v)
	}
	if v.reject != "" {
		d.reject(ctx, v.reject)
		return
	}
	if err := j.emitDue(ctx, st, stSeq); err != nil {
		d.retryLater(err)
		return
	}
	if v.arm {
		if err := j.armStep(ctx, st, step); err != nil {
			d.retryLater(err) // recorded: its redelivery arms the timer
			return
		}
	}
	if err == nil {
		for _, fn := range d.onRecorded {
			fn(openState(j.opts.ring, st), step, v.phase)
		}
	}
	if v.done {
		d.done(ctx)
		return
	}
	_ = d.m.Ack()
}

// done deletes a message that has served (a fired timer: nothing reads it
// again, and a stream of them would grow with every saga), then
// acknowledges it. A delete that fails is logged and leaves the message
// in the timer stream.
func (d *delivery) done(ctx context.Context) {
	if err := d.j.timers.DeleteMsg(ctx, d.src.seq); !deleted(err) {
		d.log().Debug("choreo: delete a fired timer", "err", err)
	}
	_ = d.m.Ack()
}

// settled handles a message whose outcome was recorded before (a
// redelivery): it finishes what a crash may have left undone.
func (d *delivery) settled(ctx context.Context, cur *State, seq uint64) {
	if err := d.j.emitDue(ctx, cur, seq); err != nil {
		d.retryLater(err)
		return
	}
	_ = d.m.Ack()
}

// reject dead-letters the message with the reason and terminates it, so
// that it is never redelivered and blocks nothing.
func (d *delivery) reject(ctx context.Context, reason string) {
	d.log().Warn("choreo: dead-lettering", "subject", d.src.subject, "reason", reason)
	if err := d.j.deadLetter(ctx, d.flow.name, d.src, d.m.Headers(), d.m.Data(), reason); err != nil {
		d.retryLater(err)
		return
	}
	if len(d.m.Headers()) == 0 && d.src.stream == wire.Stream {
		// Without headers (or with a header block no client can decode) it
		// is nobody's event: choreo writes headers on every one. Left in the
		// log it would be a saga's newest event that no read can decode.
		if err := d.j.stream.DeleteMsg(ctx, d.src.seq); !deleted(err) {
			d.retryLater(err)
			return
		}
	}
	_ = d.m.TermWithReason(reason)
}

// retryLater leaves the message for redelivery after a broker error.
func (d *delivery) retryLater(err error) {
	d.log().Warn("choreo: will retry after an error", "err", err)
	_ = d.m.NakWithDelay(time.Second)
}

// liveMsg keeps a message alive with progress acknowledgements, every third
// of the ack wait, from the moment it reaches the runner until it is
// acknowledged, rejected or left for redelivery: not only during the
// handler's call, since reading the saga before it and recording the
// outcome after it are broker round trips that a loaded broker can make
// slower than the ack wait, and a redelivery then runs the action twice.
//
// The handler's call is kept alive for as long as it takes (its step's
// timeout bounds it). The runner's own work before and after it is kept
// alive for at most hold each: every broker call it makes has that
// timeout, so anything longer is a hang (a blocked OnRecorded hook, say),
// and the message goes back to the broker as a crashed instance's would.
type liveMsg struct {
	jetstream.Msg
	every, hold time.Duration

	mu     sync.Mutex
	t      *time.Timer
	since  time.Time // start of the runner's current stretch of work
	inCall bool
	lapsed bool // ticks stopped: the hold ran out
	done   bool // settled
}

func keepAlive(m jetstream.Msg, ackWait, hold time.Duration) *liveMsg {
	l := &liveMsg{Msg: m, every: ackWait / 3, hold: hold, since: time.Now()}
	l.mu.Lock()
	l.t = time.AfterFunc(l.every, l.tick)
	l.mu.Unlock()
	return l
}

func (l *liveMsg) tick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.done:
	case l.inCall || time.Since(l.since) < l.hold:
		_ = l.Msg.InProgress()
		l.t.Reset(l.every)
	default:
		l.lapsed = true
	}
}

// enter marks the start of the handler's call.
func (l *liveMsg) enter() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inCall = true
	if l.lapsed && !l.done {
		l.lapsed = false
		l.t.Reset(0)
	}
}

// leave marks its end: the runner's work that follows has its own hold.
func (l *liveMsg) leave() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inCall = false
	l.since = time.Now()
}

// stop ends the progress acknowledgements before the message's settling
// call, so that none reaches the broker after it.
func (l *liveMsg) stop() {
	l.mu.Lock()
	l.done = true
	l.t.Stop()
	l.mu.Unlock()
}

func (l *liveMsg) Ack() error                         { l.stop(); return l.Msg.Ack() }
func (l *liveMsg) Nak() error                         { l.stop(); return l.Msg.Nak() }
func (l *liveMsg) NakWithDelay(d time.Duration) error { l.stop(); return l.Msg.NakWithDelay(d) }
func (l *liveMsg) Term() error                        { l.stop(); return l.Msg.Term() }
func (l *liveMsg) TermWithReason(why string) error    { l.stop(); return l.Msg.TermWithReason(why) }

// recorded reports an event the delivery appended, st the state it
// leaves and was the status before: to the observer, and as one log line,
// at warn or error level for what an operator wants to know of (a failed
// attempt, an abort, a timeout, a compensation, a parked saga, a
// deadline, and whatever the verdict warns of), else at debug.
func (d *delivery) recorded(st *State, was Status, step string, v verdict) {
	d.j.observe(st, step, v.phase, was)
	switch v.phase {
	case PhaseRetry, PhaseCompensationRetry, PhaseFailed, PhaseTimedOut, PhaseAbandoned, PhaseCompensated, PhaseParked, PhaseDeadline:
	default:
		if v.warn == "" && !d.debug() {
			return // the hot path: a step done, nothing to log
		}
	}
	attrs := []any{"outcome", v.phase}
	if s := st.Step(step); s != nil {
		switch {
		case (v.phase == PhaseCompensationRetry || v.phase == PhaseParked) && s.CompensationError != "":
			attrs = append(attrs, "err", s.CompensationError)
		case v.phase != PhaseCompensated && s.Error != "":
			attrs = append(attrs, "err", s.Error)
		}
	}
	if v.warn != "" {
		attrs = append(attrs, "detail", v.warn)
	}
	if v.retryIn > 0 {
		attrs = append(attrs, "in", v.retryIn)
	}
	switch v.phase {
	case PhaseRetry:
		d.log().Warn("choreo: step attempt failed, will retry", attrs...)
	case PhaseCompensationRetry:
		d.log().Warn("choreo: compensation attempt failed, will retry", attrs...)
	case PhaseFailed:
		d.log().Warn("choreo: step failed, the saga compensates", attrs...)
	case PhaseTimedOut, PhaseAbandoned:
		d.log().Warn("choreo: step outcome unknown, the saga compensates it", attrs...)
	case PhaseCompensated:
		d.log().Warn("choreo: step compensated", append(attrs, "status", st.Status)...)
	case PhaseParked:
		d.log().Error("choreo: compensation out of attempts, saga parked for an operator to retry", attrs...)
	case PhaseDeadline:
		d.log().Warn("choreo: saga deadline passed", append(attrs, "status", st.Status)...)
	default:
		if v.warn != "" {
			d.log().Warn("choreo: "+v.warn, append(attrs, "status", st.Status)...)
		} else if d.debug() {
			d.log().Debug("choreo: recorded", append(attrs, "status", st.Status)...)
		}
	}
}

// log returns the runner's logger with what this message is about: its
// consumer and sequence, the flow, saga, step, phase and attempt (the
// handler call's once one is made), and the trace id when traced.
func (d *delivery) log() *slog.Logger {
	attrs := make([]any, 0, 16)
	attrs = append(attrs, "consumer", d.src.consumer, "seq", d.src.seq)
	switch {
	case d.obs.handling:
		i := d.obs.info
		attrs = append(attrs, "flow", i.Flow, "version", i.Version, "saga", i.ID, "step", i.Step, "phase", i.Phase, "attempt", i.Attempt)
	case d.env != nil:
		phase := string(d.env.phase)
		switch {
		case d.env.timer != "":
			phase = "timer-" + d.env.timer
		case phase == "":
			phase = string(PhaseCompensation)
		}
		attrs = append(attrs, "flow", d.env.flow, "saga", d.env.id, "step", d.env.step, "phase", phase, "attempt", d.delivered)
	default:
		attrs = append(attrs, "subject", d.src.subject, "attempt", d.delivered)
	}
	if d.obs.trace.IsValid() {
		attrs = append(attrs, "trace_id", d.obs.trace.TraceID().String())
	}
	return d.j.opts.logger.With(attrs...)
}
