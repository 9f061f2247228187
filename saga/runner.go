package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
)

// RunnerOption configures a Runner. Each one checks its own value.
type RunnerOption func(*runnerOptions) error

type runnerOptions struct {
	concurrency  int
	ackWait      time.Duration
	drain        time.Duration
	interceptors []Interceptor
	validate     func(eventType string, data []byte) error
	onRecorded   []func(st *State, step, phase string)
}

// WithOnRecorded calls fn each time the runner has durably recorded an
// outcome (a step done, failed, compensated, a saga deadline) and before it
// acknowledges the message that caused it: for metrics and audit, and for
// fault injection, since a crash there is the one that loses the ack.
// Phase is the recorded event's ("done", "failed", "compensated", ...).
// fn must be quick and must not block.
func WithOnRecorded(fn func(st *State, step, phase string)) RunnerOption {
	return func(o *runnerOptions) error {
		if fn == nil {
			return fmt.Errorf("%w: nil OnRecorded hook", ErrInvalidOption)
		}
		o.onRecorded = append(o.onRecorded, fn)
		return nil
	}
}

// WithValidator checks every payload a step is about to take, by its
// CloudEvents type (a JSON Schema check, say). An event that fails is
// dead-lettered with the reason and its step fails, so the saga
// compensates.
func WithValidator(v func(eventType string, data []byte) error) RunnerOption {
	return func(o *runnerOptions) error {
		if v == nil {
			return fmt.Errorf("%w: nil validator", ErrInvalidOption)
		}
		o.validate = v
		return nil
	}
}

// Interceptor wraps every action and compensation the runner calls: for
// tracing, metrics, logging or injecting faults in tests. It must call next
// to run the handler, and may change the error it returns.
type Interceptor func(ctx context.Context, info Info, next func(context.Context) error) error

// WithInterceptor adds an interceptor; the first added is the outermost.
func WithInterceptor(i Interceptor) RunnerOption {
	return func(o *runnerOptions) error {
		if i == nil {
			return fmt.Errorf("%w: nil interceptor", ErrInvalidOption)
		}
		o.interceptors = append(o.interceptors, i)
		return nil
	}
}

// WithConcurrency sets how many messages each of the runner's consumers
// handles at once (default 128). It is also the consumer's MaxAckPending, so
// the broker never hands this runner more than it is working on.
func WithConcurrency(n int) RunnerOption {
	return func(o *runnerOptions) error {
		if n < 1 || n > 10000 {
			return fmt.Errorf("%w: concurrency must be 1 to 10000, got %d", ErrInvalidOption, n)
		}
		o.concurrency = n
		return nil
	}
}

// WithAckWait sets how long the broker waits for a handler before it
// redelivers its message to another instance (default 30s). Handlers that
// run longer are kept alive with progress acknowledgements every third of
// it (from the message's arrival to its acknowledgement), so this bounds
// how soon a crashed instance's work moves elsewhere.
func WithAckWait(d time.Duration) RunnerOption {
	return func(o *runnerOptions) error {
		if d < 100*time.Millisecond {
			return fmt.Errorf("%w: ack wait must be at least 100ms, got %v", ErrInvalidOption, d)
		}
		o.ackWait = d
		return nil
	}
}

// WithDrainTimeout sets how long Run waits, once its context ends, for the
// handlers in flight (default 30s). Handlers still running then have their
// context cancelled and their messages are left for redelivery.
func WithDrainTimeout(d time.Duration) RunnerOption {
	return func(o *runnerOptions) error {
		if d < 0 {
			return fmt.Errorf("%w: negative drain timeout", ErrInvalidOption)
		}
		o.drain = d
		return nil
	}
}

// binding is a step with its handlers, working on encoded payloads.
type binding struct {
	def        *stepDef
	action     func(ctx context.Context, in []byte) ([]byte, error)
	compensate func(ctx context.Context, in, out []byte) error // nil: nothing to undo
}

// errUndecodable marks a payload that does not decode into the step's type.
type errUndecodable struct{ err error }

func (e errUndecodable) Error() string { return "undecodable payload: " + e.err.Error() }

// Runner runs the steps a service owns. Bind steps with Handle, then call
// Run. Every instance of a service runs the same bindings; they share the
// steps' durable consumers, so the broker spreads the work among them.
type Runner struct {
	c     *Client
	o     runnerOptions
	ready chan struct{}

	mu       sync.Mutex
	bindings []*binding
	ends     []endBinding
	started  bool
	stopping bool
	inflight sync.WaitGroup
}

// NewRunner returns a runner that works through c.
func NewRunner(c *Client, opts ...RunnerOption) (*Runner, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOption)
	}
	o := runnerOptions{concurrency: 128, ackWait: 30 * time.Second, drain: 30 * time.Second}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Runner{c: c, o: o, ready: make(chan struct{})}, nil
}

// Handle binds step s's action and compensation in runner r. The action
// turns the step's input into its result; the compensation undoes a
// completed action, given the same input and that result. A nil
// compensation means there is nothing to undo. Pivot and Retriable steps
// take no compensation.
//
// The error an action returns decides what happens: nil completes the
// step; Abort(err) compensates the saga; any other error is retried with the
// step's backoff until its attempts run out, and then compensates. A
// compensation's errors are all retried; when its attempts run out the saga
// is parked as compensation_failed and the message is dead-lettered.
//
// Handle returns ErrInvalidFlow for a step that is in no flow, ErrBound for
// one already bound here or a runner already running.
func Handle[In, Out any](r *Runner, s *Step[In, Out], action func(context.Context, In) (Out, error), compensate func(context.Context, In, Out) error) error {
	if s == nil || s.def.flow == nil {
		return fmt.Errorf("%w: step is not part of a defined flow", ErrInvalidFlow)
	}
	if action == nil {
		return fmt.Errorf("%w: step %s: nil action", ErrInvalidOption, s.def.name)
	}
	if compensate != nil && s.def.kind != Compensatable {
		return fmt.Errorf("%w: step %s is %s: it is never compensated", ErrInvalidOption, s.def.name, s.def.kind)
	}
	b := &binding{def: s.def}
	b.action = func(ctx context.Context, data []byte) ([]byte, error) {
		var in In
		if err := json.Unmarshal(data, &in); err != nil {
			return nil, errUndecodable{err}
		}
		out, err := action(ctx, in)
		if err != nil {
			return nil, err
		}
		return json.Marshal(out)
	}
	if compensate != nil {
		b.compensate = func(ctx context.Context, inData, outData []byte) error {
			var in In
			var out Out
			if err := json.Unmarshal(inData, &in); err != nil {
				return errUndecodable{err}
			}
			if len(outData) > 0 { // none for a timed-out step
				if err := json.Unmarshal(outData, &out); err != nil {
					return errUndecodable{err}
				}
			}
			return compensate(ctx, in, out)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return fmt.Errorf("%w: runner already running", ErrBound)
	}
	for _, o := range r.bindings {
		if o.def == s.def {
			return fmt.Errorf("%w: %s/%s", ErrBound, s.def.flow.name, s.def.name)
		}
	}
	r.bindings = append(r.bindings, b)
	return nil
}

type endBinding struct {
	flow *Flow
	name string
	fn   func(context.Context, *State) error
}

// OnEnd binds fn to every saga of flow f that reaches a terminal status:
// completed, compensated or compensation_failed (again after an operator
// retry). It runs through a durable consumer named for the flow and name,
// shared by every instance, so each end is handled once per name (at least
// once: fn must be idempotent). An error from fn is retried.
func OnEnd(r *Runner, f *Flow, name string, fn func(ctx context.Context, st *State) error) error {
	if f == nil || fn == nil {
		return fmt.Errorf("%w: nil flow or function", ErrInvalidOption)
	}
	if !tokenRE.MatchString(name) {
		return fmt.Errorf("%w: name %q must be 1-64 characters of [A-Za-z0-9_-]", ErrInvalidOption, name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return fmt.Errorf("%w: runner already running", ErrBound)
	}
	for _, e := range r.ends {
		if e.flow == f && e.name == name {
			return fmt.Errorf("%w: OnEnd %s/%s", ErrBound, f.name, name)
		}
	}
	r.ends = append(r.ends, endBinding{flow: f, name: name, fn: fn})
	return nil
}

// onEnd hands a terminal state to an OnEnd function. Every event whose
// state is terminal is the one that made it so: nothing is appended to a
// terminal saga but an operator's resume.
func (r *Runner) onEnd(ctx context.Context, e endBinding, m jetstream.Msg) {
	env, err := parseEnvelope(m.Subject(), m.Headers(), m.Data(), r.c.opts.maxEventSize)
	if err == nil {
		if why := rogue(m.Headers(), env, 0); why != "" {
			err = bad("%s", why)
		} else if want := e.flow.typeOf(env.step, env.phase); env.ctype != want {
			err = bad("unknown event type %q on %s (want %q)", env.ctype, m.Subject(), want)
		}
	}
	if err != nil {
		r.reject(ctx, e.flow.name, m, e.flow.name+"__end_"+e.name, err.Error())
		return
	}
	if !env.state.Status.Terminal() {
		_ = m.Ack()
		return
	}
	if err := r.run(ctx, m, func(ctx context.Context) error { return e.fn(ctx, env.state.view()) }); err != nil {
		r.c.opts.logger.Warn("choreo: OnEnd", "flow", e.flow.name, "name", e.name, "saga", env.id, "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	_ = m.Ack()
}

// Ready is closed once Run has created its consumers and is receiving.
func (r *Runner) Ready() <-chan struct{} { return r.ready }

type consumerSpec struct {
	stream     string
	name, desc string
	filters    []string
	handle     func(context.Context, jetstream.Msg)
}

func (r *Runner) specs() []consumerSpec {
	var out []consumerSpec
	deadlines := map[*Flow]bool{}
	for _, b := range r.bindings {
		b, f := b, b.def.flow
		var filters []string
		if b.def.pos == 0 {
			filters = []string{subjLog + f.name + ".*." + sagaStep + "." + phaseStart}
		} else {
			for _, prev := range f.positions[b.def.pos-1] {
				filters = append(filters, subjLog+f.name+".*."+prev.name+"."+phaseDone)
			}
		}
		out = append(out, consumerSpec{
			stream: StreamName, name: f.name + "_" + b.def.name + "_do", filters: filters,
			desc:   fmt.Sprintf("choreo: flow %s v%d, step %s, action", f.name, f.version, b.def.name),
			handle: func(ctx context.Context, m jetstream.Msg) { r.onTrigger(ctx, b, m) },
		})
		if b.def.kind == Compensatable {
			out = append(out, consumerSpec{
				stream: StreamName, name: f.name + "_" + b.def.name + "_undo", filters: []string{subjCmd + f.name + ".*." + b.def.name + "." + phaseUndo},
				desc:   fmt.Sprintf("choreo: flow %s v%d, step %s, compensation", f.name, f.version, b.def.name),
				handle: func(ctx context.Context, m jetstream.Msg) { r.onUndo(ctx, b, m) },
			})
		}
		if f.deadline > 0 && !deadlines[f] {
			deadlines[f] = true
			out = append(out, consumerSpec{
				stream: TimerStream, name: f.name + "__deadline", filters: []string{subjTimer + f.name + ".*"},
				desc:   fmt.Sprintf("choreo: flow %s, saga deadlines", f.name),
				handle: func(ctx context.Context, m jetstream.Msg) { r.onTimer(ctx, f, m) },
			})
		}
	}
	for _, e := range r.ends {
		e := e
		out = append(out, consumerSpec{
			stream: StreamName, name: e.flow.name + "__end_" + e.name, filters: []string{subjLog + e.flow.name + ".>"},
			desc:   fmt.Sprintf("choreo: flow %s, ends of sagas for %s", e.flow.name, e.name),
			handle: func(ctx context.Context, m jetstream.Msg) { r.onEnd(ctx, e, m) },
		})
	}
	return out
}

// Run creates the durable consumers of the bound steps and handles their
// messages until ctx ends. Then it stops receiving, waits for the handlers
// in flight (up to the drain timeout) and returns nil. Nothing is
// acknowledged that was not processed: what is left unfinished is
// redelivered, to this service's other instances or after a restart.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return fmt.Errorf("%w: Run called twice", ErrBound)
	}
	r.started = true
	r.mu.Unlock()

	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	var running []jetstream.ConsumeContext
	stopAll := func() {
		for _, cc := range running {
			cc.Stop()
		}
	}
	for _, s := range r.specs() {
		sctx, cancel := withTimeout(ctx)
		why, err := jsutil.UnsafeConsumer(sctx, r.c.js, s.stream, s.name)
		if err == nil && why != "" {
			err = fmt.Errorf("%w: %s; delete it (nats consumer rm %s %s) and choreo recreates it", ErrUnsafeConfig, why, s.stream, s.name)
		}
		if err != nil {
			cancel()
			stopAll()
			return fmt.Errorf("saga: consumer %s: %w", s.name, err)
		}
		cons, err := r.c.js.CreateOrUpdateConsumer(sctx, s.stream, jetstream.ConsumerConfig{
			Durable:        s.name,
			Description:    s.desc,
			FilterSubjects: s.filters,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        r.o.ackWait,
			MaxAckPending:  r.o.concurrency,
			MaxDeliver:     -1,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			Replicas:       r.c.opts.replicas,
			MemoryStorage:  r.c.opts.memory,
		})
		cancel()
		if err != nil {
			stopAll()
			return fmt.Errorf("saga: consumer %s: %w", s.name, err)
		}
		sem := make(chan struct{}, r.o.concurrency)
		handle := s.handle
		cc, err := cons.Consume(func(m jetstream.Msg) {
			r.mu.Lock()
			if r.stopping {
				r.mu.Unlock()
				return // not acknowledged: redelivered later
			}
			r.inflight.Add(1)
			r.mu.Unlock()
			lm := keepAlive(m, r.o.ackWait, defaultTimeout)
			sem <- struct{}{}
			go func() {
				defer func() {
					if p := recover(); p != nil {
						r.c.opts.logger.Error("choreo: handler panic", "panic", p, "stack", string(debug.Stack()))
						_ = lm.NakWithDelay(time.Second)
					}
					lm.stop() // a message not settled is redelivered after the ack wait
					<-sem
					r.inflight.Done()
				}()
				handle(hctx, lm)
			}()
		}, jetstream.PullMaxMessages(r.o.concurrency), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			r.c.opts.logger.Debug("choreo: consume", "consumer", s.name, "err", err)
		}))
		if err != nil {
			stopAll()
			return fmt.Errorf("saga: consume %s: %w", s.name, err)
		}
		running = append(running, cc)
	}
	close(r.ready)
	<-ctx.Done()

	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	stopAll()
	done := make(chan struct{})
	go func() { r.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.o.drain):
		cancelHandlers()
		<-done
	}
	return nil
}

// reject dead-letters a message with the reason and terminates it, so that
// it is never redelivered and blocks nothing.
func (r *Runner) reject(ctx context.Context, flow string, m jetstream.Msg, consumer, reason string) {
	stream, seq := position(m)
	r.c.opts.logger.Warn("choreo: dead-lettering", "subject", m.Subject(), "seq", seq, "reason", reason)
	if err := r.c.deadLetter(ctx, flow, stream, m.Subject(), seq, consumer, m.Headers(), m.Data(), reason); err != nil {
		r.retryLater(m, err)
		return
	}
	if len(m.Headers()) == 0 && stream == StreamName {
		// Without headers (or with a header block no client can decode) it
		// is nobody's event: choreo writes headers on every one. Left in the
		// log it would be a saga's newest event that no read can decode.
		if err := r.c.stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			r.retryLater(m, err)
			return
		}
	}
	_ = m.TermWithReason(reason)
}

// rejectTrigger dead-letters a trigger that cannot be read. When it is the
// event the saga's state stands on (a start published by a careless client
// with a well-formed snapshot, say), the saga would wait for ever for a
// step that cannot run: the step fails with the reason instead, and the
// saga compensates and ends.
func (r *Runner) rejectTrigger(ctx context.Context, b *binding, m jetstream.Msg, consumer, reason string) {
	d, f := b.def, b.def.flow
	tok := strings.Split(m.Subject(), ".")
	if len(tok) != 6 || !ValidID(tok[3]) || len(m.Headers()) == 0 {
		r.reject(ctx, f.name, m, consumer, reason)
		return
	}
	id := tok[3]
	stream, seq := position(m)
	cur, curSeq, err := r.c.load(ctx, f.name, id, seq)
	if err != nil && !errors.Is(err, ErrNotFound) {
		r.retryLater(m, err)
		return
	}
	if err != nil || curSeq != seq || cur.Status != StatusRunning || cur.Step(d.name) == nil || cur.Step(d.name).Status != StepRunning {
		r.reject(ctx, f.name, m, consumer, reason)
		return
	}
	r.c.opts.logger.Warn("choreo: dead-lettering a trigger, its step fails", "subject", m.Subject(), "seq", seq, "reason", reason)
	if err := r.c.deadLetter(ctx, f.name, stream, m.Subject(), seq, consumer, m.Headers(), m.Data(), reason); err != nil {
		r.retryLater(m, err)
		return
	}
	pfx := f.name + "." + id + "." + d.name + "."
	r.record(ctx, m, cur, curSeq, f.name, id, d.name, phaseFailed, eventTypeFor(phaseFailed), pfx+phaseFailed, nil,
		func(s *State, now time.Time) error {
			return s.fail(d.name, attemptOf(m), "unusable trigger: "+reason, now)
		})
}

// position returns where m is stored.
func position(m jetstream.Msg) (string, uint64) {
	if md, err := m.Metadata(); err == nil {
		return md.Stream, md.Sequence.Stream
	}
	return "", 0
}

// loadFor reads the state of the saga m is about, no older than the log
// event at sequence min. When it cannot, it has dealt with m (dead-lettered
// for an unknown saga, left for redelivery on a broker error) and returns
// false.
func (r *Runner) loadFor(ctx context.Context, m jetstream.Msg, flow, id, consumer string, min uint64) (*State, uint64, bool) {
	cur, seq, err := r.c.load(ctx, flow, id, min)
	if errors.Is(err, ErrNotFound) {
		r.reject(ctx, flow, m, consumer, "unknown saga "+id)
		return nil, 0, false
	}
	if err != nil {
		r.retryLater(m, err)
		return nil, 0, false
	}
	return cur, seq, true
}

// retryLater leaves a message for redelivery after a broker error.
func (r *Runner) retryLater(m jetstream.Msg, err error) {
	r.c.opts.logger.Warn("choreo: will retry", "subject", m.Subject(), "err", err)
	_ = m.NakWithDelay(time.Second)
}

// record appends a transition's event, publishes the compensations it makes
// due and acknowledges m. A transition that no longer applies is not an
// error: someone else recorded the outcome first.
func (r *Runner) record(ctx context.Context, m jetstream.Msg, from *State, seq uint64, flow, id, step, phase, ctype, msgID string, data []byte, tr transition) {
	st, stSeq, err := r.c.appendFrom(ctx, from, seq, flow, id, step, phase, ctype, msgID, data, tr)
	if err != nil && !errors.Is(err, errNoop) {
		r.retryLater(m, err)
		return
	}
	if err := r.c.emitDue(ctx, st, stSeq); err != nil {
		r.retryLater(m, err)
		return
	}
	if err == nil {
		for _, fn := range r.o.onRecorded {
			fn(st, step, phase)
		}
	}
	_ = m.Ack()
}

// run calls fn through the interceptors, keeping m alive for as long as
// the call takes. A panic in fn is returned as an error.
func (r *Runner) run(ctx context.Context, m jetstream.Msg, fn func(context.Context) error) (err error) {
	if l, ok := m.(*liveMsg); ok {
		l.enter()
		defer l.leave()
	}
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

func (l *liveMsg) Ack() error                          { l.stop(); return l.Msg.Ack() }
func (l *liveMsg) DoubleAck(ctx context.Context) error { l.stop(); return l.Msg.DoubleAck(ctx) }
func (l *liveMsg) Nak() error                          { l.stop(); return l.Msg.Nak() }
func (l *liveMsg) NakWithDelay(d time.Duration) error  { l.stop(); return l.Msg.NakWithDelay(d) }
func (l *liveMsg) Term() error                         { l.stop(); return l.Msg.Term() }
func (l *liveMsg) TermWithReason(why string) error     { l.stop(); return l.Msg.TermWithReason(why) }

func attemptOf(m jetstream.Msg) int {
	if md, err := m.Metadata(); err == nil {
		return int(md.NumDelivered)
	}
	return 1
}

// inputOf returns the encoded input of step d in saga id, and its event
// type: the flow's input for the first position and after a group, else
// the previous step's result. trigger is the trigger's payload when the
// caller has it.
func (r *Runner) inputOf(ctx context.Context, d *stepDef, id string, trigger []byte) ([]byte, string, error) {
	f := d.flow
	if d.pos == 0 {
		if trigger != nil {
			return trigger, f.inputType, nil
		}
		data, err := r.c.eventData(ctx, f.name, id, sagaStep, phaseStart)
		return data, f.inputType, err
	}
	prev := f.positions[d.pos-1]
	if len(prev) > 1 {
		data, err := r.c.eventData(ctx, f.name, id, sagaStep, phaseStart)
		return data, f.inputType, err
	}
	if trigger != nil {
		return trigger, prev[0].eventType, nil
	}
	data, err := r.c.eventData(ctx, f.name, id, prev[0].name, phaseDone)
	return data, prev[0].eventType, err
}

// onTrigger handles an event that may trigger step b's action.
func (r *Runner) onTrigger(ctx context.Context, b *binding, m jetstream.Msg) {
	d, f := b.def, b.def.flow
	consumer := f.name + "_" + d.name + "_do"
	env, err := parseEnvelope(m.Subject(), m.Headers(), m.Data(), r.c.opts.maxEventSize)
	if err == nil {
		want := f.inputType
		if env.step != sagaStep {
			want = f.byName[env.step].eventType
		}
		if env.ctype != want {
			err = bad("unknown event type %q on %s (want %q)", env.ctype, m.Subject(), want)
		}
	}
	if err != nil {
		r.rejectTrigger(ctx, b, m, consumer, err.Error())
		return
	}
	// Fast path: the first delivery of a fresh trigger that choreo appended
	// runs from the state the trigger carries. If anything happened to the
	// saga since, the compare-and-set of the outcome fails and the state is
	// read again. Redeliveries, old triggers (a consumer replaying history)
	// and anything suspicious read the current state first.
	var cur *State
	var curSeq uint64
	if md, merr := m.Metadata(); merr == nil && md.NumDelivered == 1 && time.Since(md.Timestamp) < r.o.ackWait {
		if rogue(m.Headers(), env, 0) == "" {
			cur, curSeq = env.state, md.Sequence.Stream
		}
	}
	if cur == nil {
		var ok bool
		_, seq := position(m) // the trigger is in the log
		if cur, curSeq, ok = r.loadFor(ctx, m, f.name, env.id, consumer, seq); !ok {
			return
		}
	}
	st := cur.Step(d.name)
	if st == nil || st.Trigger != env.state.Events {
		_ = m.Ack() // not this step's trigger: a sibling's result, or another version's
		return
	}
	pfx := f.name + "." + env.id + "." + d.name + "."
	if st.Status != StepRunning {
		// Decided already: a redelivery. Finish what a crash may have left.
		if err := r.c.emitDue(ctx, cur, curSeq); err != nil {
			r.retryLater(m, err)
			return
		}
		_ = m.Ack()
		return
	}
	if cur.Status != StatusRunning {
		// The saga compensates: the step is not run. On a first delivery it
		// never ran; on a redelivery an earlier one may have made its
		// effect before a crash, so it is compensated.
		if md, merr := m.Metadata(); merr == nil && md.NumDelivered > 1 && d.kind == Compensatable {
			r.record(ctx, m, cur, curSeq, f.name, env.id, d.name, phaseAbandoned, eventTypeFor(phaseAbandoned), pfx+phaseAbandoned, nil,
				func(s *State, now time.Time) error { return s.abandon(d.name, now) })
			return
		}
		r.record(ctx, m, cur, curSeq, f.name, env.id, d.name, phaseSkipped, eventTypeFor(phaseSkipped), pfx+phaseSkipped, nil,
			func(s *State, now time.Time) error { return s.skip(d.name, now) })
		return
	}
	attempt := attemptOf(m)
	// The step's own timeout and the saga's deadline both bound the action.
	var deadline time.Time
	expired := fmt.Sprintf("timed out after %v", d.timeout)
	// Only compensatable steps are bounded: a retriable step runs until it
	// succeeds, and a pivot, once triggered, decides the saga's direction.
	if d.timeout > 0 && d.kind == Compensatable {
		deadline = st.StartedAt.Add(d.timeout)
	}
	if !cur.Deadline.IsZero() && d.kind == Compensatable && (deadline.IsZero() || cur.Deadline.Before(deadline)) {
		deadline, expired = cur.Deadline, "saga deadline exceeded"
	}
	timedOut := func() bool { return !deadline.IsZero() && !time.Now().Before(deadline) }
	fail := func(reason string) {
		r.record(ctx, m, cur, curSeq, f.name, env.id, d.name, phaseFailed, eventTypeFor(phaseFailed), pfx+phaseFailed, nil,
			func(s *State, now time.Time) error { return s.fail(d.name, attempt, reason, now) })
	}
	if timedOut() {
		// No outcome in time, and an earlier delivery may have made the
		// effect before a crash: the step is compensated.
		r.record(ctx, m, cur, curSeq, f.name, env.id, d.name, phaseTimedOut, eventTypeFor(phaseTimedOut), pfx+phaseTimedOut, nil,
			func(s *State, now time.Time) error { return s.timeOut(d.name, attempt, expired, now) })
		return
	}
	input, itype, err := r.inputOf(ctx, d, env.id, triggerData(m, env))
	if err != nil {
		r.retryLater(m, err)
		return
	}
	if r.o.validate != nil {
		if verr := r.o.validate(itype, input); verr != nil {
			reason := fmt.Sprintf("schema-invalid %s: %v", itype, verr)
			stream, seq := position(m)
			if derr := r.c.deadLetter(ctx, f.name, stream, m.Subject(), seq, consumer, m.Headers(), input, reason); derr != nil {
				r.retryLater(m, derr)
				return
			}
			fail(reason)
			return
		}
	}
	actx := context.WithValue(ctx, infoKey{}, &runInfo{c: r.c, Info: Info{
		Flow: f.name, ID: env.id, Step: d.name, Phase: "action", Attempt: attempt,
		IdempotencyKey: f.name + "/" + env.id + "/" + d.name,
	}})
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		actx, cancel = context.WithDeadline(actx, deadline)
		defer cancel()
	}
	var out []byte
	err = r.run(actx, m, func(ctx context.Context) (err error) {
		out, err = b.action(ctx, input)
		return err
	})
	policy := d.retry.withDefaults(5, 5*time.Second)
	var undecodable errUndecodable
	switch {
	case err == nil && len(out) > 1024 && len(out)+len(encodeState(cur))+4096 > r.c.opts.maxEventSize:
		// A result no reader would accept (see WithMaxEventSize). Its
		// effect may have been made: a compensatable step's outcome is
		// unknown and compensated, any other step fails.
		reason := fmt.Sprintf("its result is %d bytes, over the %d-byte event limit", len(out), r.c.opts.maxEventSize)
		r.c.opts.logger.Error("choreo: step result too large", "flow", f.name, "saga", env.id, "step", d.name, "bytes", len(out))
		if d.kind != Compensatable {
			fail(reason)
			return
		}
		r.record(ctx, m, cur, curSeq, f.name, env.id, d.name, phaseTimedOut, eventTypeFor(phaseTimedOut), pfx+phaseTimedOut, nil,
			func(s *State, now time.Time) error { return s.timeOut(d.name, attempt, reason, now) })
	case err == nil && timedOut():
		// A late result: record it so it is compensated, and compensate.
		reason := fmt.Sprintf("step %s: %s (its late result is compensated)", d.name, expired)
		r.record(ctx, m, cur, curSeq, f.name, env.id, d.name, phaseDone, d.eventType, pfx+phaseDone, out,
			func(s *State, now time.Time) error {
				if err := s.complete(d.name, attempt, now); err != nil {
					return err
				}
				s.compensate(reason)
				return nil
			})
	case err == nil:
		r.record(ctx, m, cur, curSeq, f.name, env.id, d.name, phaseDone, d.eventType, pfx+phaseDone, out,
			func(s *State, now time.Time) error { return s.complete(d.name, attempt, now) })
	case timedOut() && !IsAbort(err):
		reason := fmt.Sprintf("%s: %v", expired, err)
		r.record(ctx, m, cur, curSeq, f.name, env.id, d.name, phaseTimedOut, eventTypeFor(phaseTimedOut), pfx+phaseTimedOut, nil,
			func(s *State, now time.Time) error { return s.timeOut(d.name, attempt, reason, now) })
	case errors.As(err, &undecodable):
		stream, seq := position(m)
		if derr := r.c.deadLetter(ctx, f.name, stream, m.Subject(), seq, consumer, m.Headers(), input, err.Error()); derr != nil {
			r.retryLater(m, derr)
			return
		}
		fail(err.Error())
	case IsAbort(err) && d.kind != RetriableStep:
		fail(err.Error())
	case d.kind != RetriableStep && attempt >= policy.MaxAttempts:
		fail(fmt.Sprintf("retries exhausted after %d attempts: %v", attempt, err))
	default:
		_, _, aerr := r.c.appendEvent(ctx, f.name, env.id, d.name, phaseRetry, eventTypeFor(phaseRetry),
			fmt.Sprintf("%s%s.%d", pfx, phaseRetry, attempt), nil,
			func(s *State, _ time.Time) error { return s.retrying(d.name, attempt, err.Error()) })
		if aerr != nil && !errors.Is(aerr, errNoop) {
			r.c.opts.logger.Warn("choreo: record retry", "err", aerr)
		}
		_ = m.NakWithDelay(policy.backoff(attempt))
	}
}

// triggerData returns the trigger's payload when it is the step's input.
func triggerData(m jetstream.Msg, env *envelope) []byte {
	if env.step == sagaStep || env.phase == phaseDone {
		return m.Data()
	}
	return nil
}

// onUndo handles a command to compensate step b.
func (r *Runner) onUndo(ctx context.Context, b *binding, m jetstream.Msg) {
	d, f := b.def, b.def.flow
	consumer := f.name + "_" + d.name + "_undo"
	env, err := parseEnvelope(m.Subject(), m.Headers(), m.Data(), r.c.opts.maxEventSize)
	if err == nil && env.ctype != eventTypeFor(phaseUndo) {
		err = bad("unknown event type %q on %s", env.ctype, m.Subject())
	}
	if err != nil {
		r.reject(ctx, f.name, m, consumer, err.Error())
		return
	}
	after, _ := strconv.ParseUint(m.Headers().Get(HeaderAfter), 10, 64) // absent from older commands: 0
	cur, curSeq, ok := r.loadFor(ctx, m, f.name, env.id, consumer, after)
	if !ok {
		return
	}
	if _, err := cur.due(d.name); err != nil || env.epoch != cur.Epoch {
		// Done already, not due, or from an earlier operator retry.
		if err := r.c.emitDue(ctx, cur, curSeq); err != nil {
			r.retryLater(m, err)
			return
		}
		_ = m.Ack()
		return
	}
	attempt := attemptOf(m)
	pfx := fmt.Sprintf("%s.%s.%s.", f.name, env.id, d.name)
	if b.compensate != nil {
		input, _, err := r.inputOf(ctx, d, env.id, nil)
		if err != nil {
			r.retryLater(m, err)
			return
		}
		var output []byte // a timed-out step has none: the zero value
		if cur.Step(d.name).Status != StepUnknown {
			if output, err = r.c.eventData(ctx, f.name, env.id, d.name, phaseDone); err != nil {
				r.retryLater(m, err)
				return
			}
		}
		cctx := context.WithValue(ctx, infoKey{}, &runInfo{c: r.c, Info: Info{
			Flow: f.name, ID: env.id, Step: d.name, Phase: "compensation", Attempt: attempt,
			IdempotencyKey: f.name + "/" + env.id + "/" + d.name + "/compensation",
		}})
		err = r.run(cctx, m, func(ctx context.Context) error { return b.compensate(ctx, input, output) })
		if err != nil {
			policy := d.compRetry.withDefaults(25, 30*time.Second)
			if attempt < policy.MaxAttempts {
				_, _, aerr := r.c.appendEvent(ctx, f.name, env.id, d.name, phaseCompRetry, eventTypeFor(phaseCompRetry),
					fmt.Sprintf("%s%s.%d.%d", pfx, phaseCompRetry, cur.Epoch, attempt), nil,
					func(s *State, _ time.Time) error { return s.compRetrying(d.name, attempt, err.Error()) })
				if aerr != nil && !errors.Is(aerr, errNoop) {
					r.c.opts.logger.Warn("choreo: record compensation retry", "err", aerr)
				}
				_ = m.NakWithDelay(policy.backoff(attempt))
				return
			}
			reason := fmt.Sprintf("compensation of %s failed after %d attempts: %v", d.name, attempt, err)
			_, _, perr := r.c.appendEvent(ctx, f.name, env.id, d.name, phaseParked, eventTypeFor(phaseParked),
				fmt.Sprintf("%s%s.%d", pfx, phaseParked, cur.Epoch), nil,
				func(s *State, now time.Time) error { return s.park(d.name, attempt, reason, now) })
			if perr != nil && !errors.Is(perr, errNoop) {
				r.retryLater(m, perr)
				return
			}
			r.reject(ctx, f.name, m, consumer, reason)
			return
		}
	}
	r.record(ctx, m, cur, curSeq, f.name, env.id, d.name, phaseCompensated, eventTypeFor(phaseCompensated),
		fmt.Sprintf("%s%s.%d", pfx, phaseCompensated, cur.Epoch), nil,
		func(s *State, now time.Time) error { return s.compensated(d.name, attempt, now) })
}

// onTimer handles a saga deadline firing.
func (r *Runner) onTimer(ctx context.Context, f *Flow, m jetstream.Msg) {
	consumer := f.name + "__deadline"
	env, err := parseEnvelope(m.Subject(), m.Headers(), m.Data(), r.c.opts.maxEventSize)
	if err == nil && (env.step != sagaStep || env.ctype != eventTypeFor(phaseTimer)) {
		err = bad("unknown event type %q on %s", env.ctype, m.Subject())
	}
	if err != nil {
		r.reject(ctx, f.name, m, consumer, err.Error())
		return
	}
	cur, curSeq, ok := r.loadFor(ctx, m, f.name, env.id, consumer, 0)
	if !ok {
		return
	}
	// The broker's scheduler marks what it fires; trust its clock over ours.
	fired := m.Headers().Get("Nats-Scheduler") == subjSched+f.name+"."+env.id
	r.record(ctx, m, cur, curSeq, f.name, env.id, sagaStep, phaseDeadline, eventTypeFor(phaseDeadline), f.name+"."+env.id+".deadline", nil,
		func(s *State, now time.Time) error {
			if fired && now.Before(s.Deadline) {
				now = s.Deadline
			}
			return s.expire(now)
		})
}
