package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-go/choreo/internal/wire"
)

// call is one handler call as observed: its span and its clock.
type call struct {
	span  trace.Span
	start time.Time
	info  Info
}

// begin opens the span of a handler call described by info, as a child of
// the span that caused the message d (in ctx), and notes the call in d
// for the lines it logs.
func (r *Runner) begin(ctx context.Context, d *delivery, info Info) (context.Context, call) {
	c := call{info: info, start: time.Now()}
	d.obs.info, d.obs.handling = info, true
	if r.j.untraced(ctx) {
		c.span = trace.SpanFromContext(ctx) // a no-op
		return ctx, c
	}
	ctx, c.span = r.j.opts.tracer.Start(ctx, info.Flow+"/"+info.Step+" "+string(info.Phase), trace.WithSpanKind(trace.SpanKindConsumer))
	if c.span.IsRecording() {
		c.span.SetAttributes(AttrFlow.String(info.Flow), AttrVersion.Int(info.Version), AttrSaga.String(info.ID),
			AttrStep.String(info.Step), AttrPhase.String(string(info.Phase)), AttrAttempt.Int(info.Attempt))
	}
	if sc := c.span.SpanContext(); sc.IsValid() {
		d.obs.trace = sc
	}
	return ctx, c
}

// failure reports whether a recorded phase is a failed attempt or
// outcome.
func failure(p Phase) bool {
	switch p {
	case PhaseFailed, PhaseTimedOut, PhaseRetry, PhaseCompensationRetry, PhaseParked:
		return true
	}
	return false
}

// judged notes what was decided of the call, v, and the error the
// handler returned: on the span (an error status for a failure), and to
// the observer.
func (c *call) judged(d *delivery, v verdict, err error) {
	took := time.Since(c.start)
	if c.span.IsRecording() {
		c.span.SetAttributes(AttrOutcome.String(string(v.phase)))
		if failure(v.phase) {
			msg := string(v.phase)
			if err != nil {
				msg = err.Error()
				c.span.RecordError(err)
			}
			c.span.SetStatus(codes.Error, msg)
		}
	}
	if o := d.j.opts.observer; o != nil {
		o.Handled(c.info, v.phase, took)
	}
}

// end closes the span, once the outcome is recorded.
func (c *call) end() { c.span.End() }

// endSpan opens the span of an OnEnd handler's call for a saga that
// ended as st: the last of its trace.
func (r *Runner) endSpan(ctx context.Context, flow, handler string, st *State, attempt int) (context.Context, trace.Span) {
	if r.j.untraced(ctx) {
		return ctx, trace.SpanFromContext(ctx)
	}
	ctx, sp := r.j.opts.tracer.Start(ctx, flow+" end "+handler, trace.WithSpanKind(trace.SpanKindConsumer))
	if sp.IsRecording() {
		sp.SetAttributes(AttrFlow.String(flow), AttrVersion.Int(st.Version), AttrSaga.String(st.ID),
			AttrStep.String(wire.SagaStep), AttrPhase.String("end"), AttrAttempt.Int(attempt), AttrOutcome.String(string(st.Status)))
	}
	return ctx, sp
}

// inputOf returns the encoded input of step d in saga id: the result of
// its source step, or the flow's input (d.source, set by Define), opened
// when it is sealed (crypt.go). t is the event that triggered the step,
// whose payload is used when it is that input.
func (r *Runner) inputOf(ctx context.Context, d *stepDef, id string, t triggerEvent) ([]byte, error) {
	f := d.flow
	step, phase := wire.SagaStep, PhaseStart
	if d.source != nil {
		step, phase = d.source.name, PhaseDone
	}
	if t.data != nil && t.step == step && t.phase == phase {
		if t.key == "" {
			return t.data, nil
		}
		data, err := r.j.opts.ring.open(t.key, t.data, t.subject)
		if err != nil {
			return nil, fmt.Errorf("saga: %s/%s: read %s %s: %w", f.name, id, step, phase, err)
		}
		return data, nil
	}
	return r.j.eventData(ctx, f.name, f.version, id, step, phase)
}

// onTrigger handles an event that may trigger step b's action.
func (r *Runner) onTrigger(ctx context.Context, b *binding, d *delivery) {
	def := b.def
	if err := d.read(); err != nil {
		r.rejectTrigger(ctx, def, d, err.Error())
		return
	}
	env := d.env
	if env.step == wire.SagaStep && env.phase == PhaseUnpaused {
		r.onUnpause(ctx, b, d)
		return
	}
	// Fast path: the first delivery of a fresh trigger that choreo appended
	// runs from the state the trigger carries. If anything happened to the
	// saga since, the compare-and-set of the outcome fails and the state is
	// read again. Redeliveries, old triggers (a consumer replaying history)
	// and anything suspicious read the current state first.
	cur, curSeq := env.state, d.src.seq
	rogueTrigger := rogue(d.m.Headers(), env, 0) != ""
	if !rogueTrigger && !d.vouch(ctx) {
		return
	}
	stale := time.Since(d.stored) >= r.o.ackWait
	if d.delivered != 1 || stale || rogueTrigger {
		var ok bool
		if cur, curSeq, ok = d.state(ctx, d.src.seq); !ok { // the trigger is in the log
			return
		}
	}
	attempt := d.delivered
	verdict := judgeTrigger(def, cur, env.state.Events, d.delivered, stale, r.j.sagaTime())
	switch verdict {
	case triggerIgnore:
		_ = d.m.Ack() // not this step's trigger: a sibling's result, or another version's
		return
	case triggerSettled:
		if err := r.j.armStep(ctx, cur, def.name); err != nil { // a crash may have left a wait without its timer
			d.retryLater(err)
			return
		}
		d.settled(ctx, cur, curSeq)
		return
	case triggerRun:
		if cur.Paused != nil {
			// An operator paused the saga: held, not run, until it resumes.
			d.record(ctx, cur, curSeq, def.name, heldVerdict(def), nil)
			return
		}
	default:
		d.record(ctx, cur, curSeq, def.name, notRunVerdict(def, verdict, attempt, stepBound(def, cur)), nil)
		return
	}
	r.runAttempt(ctx, b, d, cur, curSeq, attempt, triggerEvent{d.m.Data(), env.step, env.phase, keyOf(d.m.Headers()), d.src.subject}, false)
}

// onUnpause handles the resume of a paused saga (ResumeSaga) on step b's
// action consumer: a step held by the pause runs now, its next attempt.
// Its retries are redeliveries of the resume.
func (r *Runner) onUnpause(ctx context.Context, b *binding, d *delivery) {
	if rogue(d.m.Headers(), d.env, 0) != "" || !d.vouch(ctx) {
		if rogue(d.m.Headers(), d.env, 0) != "" {
			d.reject(ctx, "a resume that choreo did not append")
		}
		return
	}
	cur, curSeq, ok := d.state(ctx, d.src.seq)
	if !ok {
		return
	}
	st := cur.Step(b.def.name)
	if st == nil || !st.Held || st.Status != StepRunning || cur.Paused != nil || cur.Status != StatusRunning {
		_ = d.m.Ack() // nothing of this step was held, or the saga moved on
		return
	}
	r.runAttempt(ctx, b, d, cur, curSeq, st.Attempts+1, triggerEvent{}, false)
}

// triggerEvent is the event that triggered a step's attempt, when it may be the
// step's input.
type triggerEvent struct {
	data    []byte
	step    string
	phase   Phase
	key     string // the key that sealed data (crypt.go), or ""
	subject string
}

// runAttempt runs attempt of step b's action on the saga cur (at sequence
// curSeq) and records its outcome. t is the triggering event (none when
// the step's own timer runs the attempt: byTimer, a step completed later
// tried again).
func (r *Runner) runAttempt(ctx context.Context, b *binding, d *delivery, cur *State, curSeq uint64, attempt int, t triggerEvent, byTimer bool) {
	def := b.def
	input, err := r.inputOf(ctx, def, cur.ID, t)
	if errors.Is(err, ErrUnsealable) {
		// A sealed input that does not open (altered, or moved from another
		// saga) is as unreadable as one that does not decode. A key not
		// given (ErrNoKey) is the deployment's to fix: it is tried again.
		v := judgeAction(def, attempt, actionResult{err: errUndecodable{err}}, stepBound(def, cur))
		if byTimer {
			v = timerRun(def, attempt, v, err)
		}
		d.record(ctx, cur, curSeq, def.name, v, t.data)
		return
	}
	if err != nil {
		d.retryLater(err)
		return
	}
	bnd := stepBound(def, cur)
	info := Info{Flow: cur.Flow, Version: cur.Version, ID: cur.ID, Step: def.name, Phase: PhaseAction, Attempt: attempt}
	ctx, c := r.begin(ctx, d, info)
	defer c.end()
	if r.o.validate != nil {
		itype := def.inputType()
		if verr := r.o.validate(itype, input); verr != nil {
			v := schemaInvalid(def, attempt, itype, sealError(r.j.opts.ring, cur.Flow, cur.ID, verr))
			if byTimer {
				v.done = true
			}
			c.judged(d, v, errors.New(v.deadLetter))
			d.record(ctx, cur, curSeq, def.name, v, input)
			return
		}
	}
	actx := context.WithValue(ctx, infoKey{}, &runInfo{j: r.j, Info: info, waits: def.Waits()})
	if !bnd.at.IsZero() {
		var cancel context.CancelFunc
		actx, cancel = context.WithDeadline(actx, bnd.at)
		defer cancel()
	}
	var o actionResult
	o.err = r.run(actx, d.m, func(ctx context.Context) (err error) {
		o.out, err = b.action(ctx, input)
		return err
	})
	o.err = sealError(r.j.opts.ring, cur.Flow, cur.ID, o.err)
	o.late = bnd.reached(r.j.sagaTime())
	if o.err == nil && len(o.out) > 1024 {
		o.tooLarge = oversize(len(o.out), len(encodeState(cur)), r.j.opts.maxEventSize)
	}
	v := judgeAction(def, attempt, o, bnd)
	if byTimer {
		v = timerRun(def, attempt, v, o.err)
	}
	c.judged(d, v, o.err)
	d.record(ctx, cur, curSeq, def.name, v, input)
}

// onStepTimer handles a step's own timer (a step completed later): its
// wait timed out, or its next attempt is due.
func (r *Runner) onStepTimer(ctx context.Context, b *binding, d *delivery) {
	def := b.def
	if !d.parse(ctx) {
		return
	}
	env := d.env
	if env.step != def.name || env.timer != wire.TimerStep {
		d.reject(ctx, fmt.Sprintf("timer of step %s on the consumer of %s", env.step, def.name))
		return
	}
	cur, curSeq, err := r.j.load(ctx, env.flow, env.id, 0)
	if errors.Is(err, ErrNotFound) {
		d.done(ctx) // the saga ended and expired before its step's timer fired
		return
	}
	if err != nil {
		d.retryLater(err)
		return
	}
	st := cur.Step(def.name)
	if st == nil || !ownTimed(st) || st.Attempts != env.attempt {
		// An earlier attempt's timer, or the step was decided. A crash
		// between recording and arming a timer is made good here.
		if err := r.j.armStep(ctx, cur, def.name); err != nil {
			d.retryLater(err)
			return
		}
		d.done(ctx)
		return
	}
	if cur.Paused != nil {
		// An operator paused the saga: its step's timer waits with it.
		_ = d.m.NakWithDelay(pausedTimerRetry)
		return
	}
	fired := d.m.Headers().Get("Nats-Scheduler") == wire.StepSchedSubject(env.flow, env.id, def.name)
	if now := r.j.sagaTime(); !fired && now.Before(st.WaitUntil) {
		_ = d.m.NakWithDelay(st.WaitUntil.Sub(now)) // not due yet by the saga's clock
		return
	}
	if st.Status == StepWaiting {
		again, v := waitOver(def, st.Attempts)
		if v.warn != "" {
			d.log().Warn("choreo: "+v.warn, "flow", cur.Flow, "saga", cur.ID, "step", def.name)
		}
		if !again {
			d.record(ctx, cur, curSeq, def.name, v, nil)
			return
		}
	}
	r.runAttempt(ctx, b, d, cur, curSeq, st.Attempts+1, triggerEvent{}, true)
}

// heldVerdict records a trigger of step d held by its saga's pause.
func heldVerdict(d *stepDef) verdict {
	return verdict{phase: PhaseHeld, apply: func(s *State, _ time.Time) error { return s.hold(d.name) }}
}

// pausedTimerRetry is how often a step's own timer that fired while its
// saga is paused is looked at again.
const pausedTimerRetry = 5 * time.Second

// onEvent handles a domain event that may complete step b (CompletesOn):
// the event's field names the saga, and its payload is the step's result.
// The topic is shared with everyone's events: one that names no saga of
// this flow version, or a saga past the step, is acknowledged and left
// alone; one that comes before its step waits is held until it does.
func (r *Runner) onEvent(ctx context.Context, b *binding, d *delivery) {
	def := b.def
	id, ok := eventSaga(d.m.Data(), def.onField)
	if !ok || len(d.m.Data()) > r.j.opts.maxEventSize-4096 {
		_ = d.m.Ack()
		return
	}
	cur, seq, err := r.j.load(ctx, def.flow.name, id, 0)
	switch {
	case errors.Is(err, ErrNotFound):
		_ = d.m.Ack()
		return
	case err != nil:
		d.retryLater(err)
		return
	case cur.Version != def.flow.version:
		_ = d.m.Ack() // the consumer of its own version completes it
		return
	}
	st := cur.Step(def.name)
	switch {
	case st.Status == StepWaiting:
	case cur.Status.Terminal() || cur.Status == StatusCompensating || (st.Status != StepPending && st.Status != StepRunning):
		_ = d.m.Ack() // past the step
		return
	default:
		_ = d.m.NakWithDelay(time.Second) // early: held until the step waits
		return
	}
	e := settleEntry(def, st.Attempts, d.m.Data(), nil)
	ctx, span := r.j.completionSpan(ctx, cur, def.name, PhaseDone)
	defer span.End()
	next, nseq, err := r.j.append(ctx, cur, seq, e)
	if errors.Is(err, errNoop) {
		_ = d.m.NakWithDelay(time.Second) // the state moved: judge it again
		return
	}
	if err != nil {
		d.retryLater(err)
		return
	}
	d.env = &envelope{flow: cur.Flow, id: cur.ID, version: cur.Version, step: def.name}
	d.recorded(next, cur.Status, def.name, verdict{phase: PhaseDone})
	if err := r.j.emitDue(ctx, next, nseq); err != nil {
		d.retryLater(err)
		return
	}
	for _, fn := range d.onRecorded {
		fn(openState(r.j.opts.ring, next), def.name, PhaseDone)
	}
	_ = d.m.Ack()
}

// eventSaga reads the saga id from a domain event's JSON field.
func eventSaga(data []byte, field string) (string, bool) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) != nil {
		return "", false
	}
	var id string
	if json.Unmarshal(fields[field], &id) != nil || !ValidID(id) {
		return "", false
	}
	return id, true
}

// rejectTrigger dead-letters a trigger that cannot be read. When it is the
// event the saga's state stands on (a well-formed start over the size
// limit, say), the saga would wait for ever for a step that cannot run:
// the step fails with the reason instead, and the saga compensates and
// ends.
func (r *Runner) rejectTrigger(ctx context.Context, def *stepDef, d *delivery, reason string) {
	tok, ok := wire.Tokens(d.src.subject, 7)
	if !ok || !ValidID(tok[3]) || len(d.m.Headers()) == 0 {
		d.reject(ctx, reason)
		return
	}
	id := tok[3]
	cur, curSeq, err := r.j.load(ctx, def.flow.name, id, d.src.seq)
	if err != nil && !errors.Is(err, ErrNotFound) {
		d.retryLater(err)
		return
	}
	if err != nil || !stuckOn(cur, curSeq, d.src.seq, def.name) {
		d.reject(ctx, reason)
		return
	}
	d.env = &envelope{flow: def.flow.name, id: id, version: def.flow.version, step: tok[5]}
	d.record(ctx, cur, curSeq, def.name, unusableTrigger(def, d.delivered, reason), d.m.Data())
}

// onUndo handles a command to compensate step b.
func (r *Runner) onUndo(ctx context.Context, b *binding, d *delivery) {
	def := b.def
	if !d.parse(ctx) {
		return
	}
	env := d.env
	if env.step != def.name {
		d.reject(ctx, fmt.Sprintf("command for step %s on the consumer of %s", env.step, def.name))
		return
	}
	cur, curSeq, ok := d.state(ctx, env.after)
	if !ok {
		return
	}
	if !undoDue(cur, def.name, env.epoch) {
		d.settled(ctx, cur, curSeq) // done already, not due, or from an earlier operator retry
		return
	}
	attempt := d.delivered
	info := Info{Flow: env.flow, Version: cur.Version, ID: env.id, Step: def.name, Phase: PhaseCompensation, Attempt: attempt}
	ctx, c := r.begin(ctx, d, info)
	defer c.end()
	var err error
	if b.compensate != nil {
		input, ierr := r.inputOf(ctx, def, env.id, triggerEvent{})
		if ierr != nil {
			d.retryLater(ierr)
			return
		}
		var output []byte // a step whose outcome is unknown has none: the zero value
		if cur.Step(def.name).Status != StepUnknown {
			if output, ierr = r.j.eventData(ctx, def.flow.name, def.flow.version, env.id, def.name, PhaseDone); ierr != nil {
				d.retryLater(ierr)
				return
			}
		}
		cctx := context.WithValue(ctx, infoKey{}, &runInfo{j: r.j, Info: info})
		err = r.run(cctx, d.m, func(ctx context.Context) error { return b.compensate(ctx, input, output) })
		err = sealError(r.j.opts.ring, env.flow, env.id, err)
	}
	v := judgeCompensation(def, attempt, err)
	c.judged(d, v, err)
	d.record(ctx, cur, curSeq, def.name, v, nil)
}

// onTimer handles a saga's timer: its deadline, the begin of a saga
// started for later, or the end of an ended saga's retention.
func (r *Runner) onTimer(ctx context.Context, d *delivery) {
	if !d.parse(ctx) {
		return
	}
	env := d.env
	if env.timer == wire.TimerExpire {
		if err := r.j.expire(ctx, env.flow, env.id); err != nil {
			d.retryLater(err)
			return
		}
		d.done(ctx)
		return
	}
	cur, curSeq, ok := d.state(ctx, 0)
	if !ok {
		return
	}
	// The broker's scheduler marks what it fires; trust its clock over ours.
	fired := d.m.Headers().Get("Nats-Scheduler") == wire.SchedSubject(env.flow, env.id)
	if env.timer == wire.TimerBegin {
		r.onBegin(ctx, d, cur, curSeq, fired)
		return
	}
	d.record(ctx, cur, curSeq, wire.SagaStep, deadlinePassed(fired), nil)
}

// onBegin appends the begin of a scheduled saga, cur, whose time came.
// Its deadline timer is set first, as a start sets it before the start:
// a running saga without it could run for ever, a deadline of a saga that
// did not begin does nothing. That timer replaces the saga's one
// schedule: were the saga cancelled and ended meanwhile, its expiry is
// set again. A begin that does not apply (the saga began or was
// cancelled, or the timer came early) deletes the timer.
func (r *Runner) onBegin(ctx context.Context, d *delivery, cur *State, curSeq uint64, fired bool) {
	var deadline time.Time
	if at := beginAt(cur, fired, r.j.sagaTime()); !at.IsZero() && d.flow.deadline > 0 {
		deadline = at.Add(d.flow.deadline).Truncate(timeUnit)
		if err := r.j.schedule(ctx, cur, wire.TimerDeadline, deadline, cur.Flow+"."+cur.ID+".timer"); err != nil {
			d.retryLater(err)
			return
		}
	}
	v := beginVerdict(fired, deadline)
	var found *State // the saga as a begin that did not apply found it
	apply := v.apply
	v.apply = func(s *State, now time.Time) error {
		err := apply(s, now)
		found = nil
		if errors.Is(err, errNoop) {
			found = s
		}
		return err
	}
	d.record(ctx, cur, curSeq, wire.SagaStep, v, nil)
	if !deadline.IsZero() && found != nil && (found.Status == StatusCompleted || found.Status == StatusCompensated) && r.j.opts.retention > 0 {
		at := found.EndedAt.Add(r.j.opts.retention)
		id := found.Flow + "." + found.ID + ".expire." + strconv.Itoa(found.Epoch) + ".after-begin"
		if err := r.j.schedule(ctx, found, wire.TimerExpire, at, id); err != nil {
			d.log().Warn("choreo: set an ended saga's expiry again", "err", err)
		}
	}
}

// onEnd hands a terminal state to an OnEnd function. Every event whose
// state is terminal is the one that made it so: nothing is appended to a
// terminal saga but an operator's resume.
func (r *Runner) onEnd(ctx context.Context, e endBinding, d *delivery) {
	st := d.ended(ctx)
	if st == nil || !d.vouch(ctx) {
		return
	}
	ctx, span := r.endSpan(ctx, e.flow, e.name, st, d.delivered)
	defer span.End()
	err := r.run(ctx, d.m, func(ctx context.Context) error { return e.fn(ctx, openState(r.j.opts.ring, st.view())) })
	switch judgeEnd(err) {
	case endDeadLetter:
		d.reject(ctx, "OnEnd "+e.name+": "+err.Error())
	case endRetry:
		d.log().Warn("choreo: OnEnd failed, will retry", "name", e.name, "err", err)
		_ = d.m.NakWithDelay(time.Second)
	default:
		_ = d.m.Ack()
	}
}

// run calls fn through the interceptors, keeping m alive for as long as
// the call takes. A panic in fn is returned as an error.
func (r *Runner) run(ctx context.Context, m *liveMsg, fn func(context.Context) error) (err error) {
	m.enter()
	defer m.leave()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	call := fn
	if ri, ok := ctx.Value(infoKey{}).(*runInfo); ok {
		for i := len(r.o.interceptors) - 1; i >= 0; i-- {
			ic, next := r.o.interceptors[i], call
			call = func(ctx context.Context) error { return ic(ctx, ri.Info, next) }
		}
	}
	return call(ctx)
}
