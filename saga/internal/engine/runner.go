package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/internal/wire"
)

// RunnerOption configures a Runner. Each one checks its own value.
type RunnerOption func(*runnerOptions) error

type runnerOptions struct {
	concurrency  int
	ackWait      time.Duration
	drain        time.Duration
	interceptors []Interceptor
	validate     func(eventType string, data []byte) error
	schemaOf     func(eventType string) ([]byte, error)
	onRecorded   []func(st *State, step string, phase Phase)
	serve        map[string][]int // flow name -> the versions Handle binds (ServeVersions)
}

// ServeVersions limits the versions of the named flow that the runner
// serves: Handle binds a step only in these versions of it (by default, in
// every version the step is in). It is how one build runs as an old
// instance, a new one, or both, through a rolling upgrade: an instance
// with only version 1 never takes version 2's work, and its client starts
// version 1 sagas (Start starts the newest version the client knows). Name
// the versions of a flow in one ServeVersions.
func ServeVersions(flow string, versions ...int) RunnerOption {
	return func(o *runnerOptions) error {
		if !wire.Token(flow) || len(versions) == 0 {
			return fmt.Errorf("%w: ServeVersions needs a flow name and at least one version", ErrInvalidOption)
		}
		for _, v := range versions {
			if v < 1 {
				return fmt.Errorf("%w: flow %s: version %d", ErrInvalidOption, flow, v)
			}
		}
		if o.serve == nil {
			o.serve = map[string][]int{}
		}
		o.serve[flow] = slices.Clone(versions)
		return nil
	}
}

// WithOnRecorded observes outcomes: it calls fn each time the runner has
// durably recorded one (a step done, failed, timed out, abandoned or
// skipped, a compensation done, a saga deadline) and before it
// acknowledges the message that caused it. Retries and parked sagas are
// not outcomes here. Use it for metrics and audit; a crash inside fn is
// the one that loses the acknowledgement, so fault-injection tests hook
// here too. step is "_saga" for a deadline. fn must be quick and must not
// block.
func WithOnRecorded(fn func(st *State, step string, phase Phase)) RunnerOption {
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

// WithSchemas names where the JSON Schema of each event type is: the
// runner registers its flow versions in the broker with the schemas of
// their input and of each step's result, so that operator tools (choreo
// flows asyncapi) describe every message with its schema. A type schemaOf
// returns an error for is registered without one. It pairs with
// WithValidator, which checks payloads against the same schemas.
func WithSchemas(schemaOf func(eventType string) ([]byte, error)) RunnerOption {
	return func(o *runnerOptions) error {
		if schemaOf == nil {
			return fmt.Errorf("%w: nil schema lookup", ErrInvalidOption)
		}
		o.schemaOf = schemaOf
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
// redelivers its message to another instance (default 10s). Handlers that
// run longer are kept alive with progress acknowledgements every third of
// it (from the message's arrival to its acknowledgement), so this bounds
// how soon a crashed instance's work moves elsewhere: a step's timeout
// counts from its start, so keep it well above the ack wait, or a crash
// mid-step times the step out before another instance can run it.
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
// context cancelled and their messages are left for redelivery; Run waits
// 5s more for them to return, then returns without them.
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

// Runner runs the steps a service owns. Bind steps with Handle, then call
// Run. Every instance of a service runs the same bindings; they share the
// steps' durable consumers, so the broker spreads the work among them.
type Runner struct {
	c     *Client
	j     *journal
	o     runnerOptions
	ready chan struct{}

	quit chan struct{} // closed when Run returns: its workers stop

	mu       sync.Mutex
	bindings []*binding
	ends     []endBinding
	started  bool
	stopping bool
	inflight sync.WaitGroup
	outage   bool // a consumer is gone; logged once until all are back
}

// attached is one of Run's consumers and what it knows of its health.
type attached struct {
	spec consumerSpec
	cc   jetstream.ConsumeContext
	pool *pool       // its workers, kept across reattaches
	gone atomic.Bool // the broker said the consumer or its stream is missing
}

// reattachEvery is how often Run tries to bring back a consumer that is
// gone (its stream deleted, or the consumer itself).
const reattachEvery = 2 * time.Second

// NewRunner returns a runner that works through c. It returns an error
// wrapping ErrInvalidOption for a nil client or a bad option.
func NewRunner(c *Client, opts ...RunnerOption) (*Runner, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOption)
	}
	o := runnerOptions{concurrency: 128, ackWait: 10 * time.Second, drain: 30 * time.Second}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Runner{c: c, j: c.j, o: o, ready: make(chan struct{}), quit: make(chan struct{})}, nil
}

// Handle binds step s's action and compensation in runner r. The action
// turns the step's input into its result; the compensation undoes a
// completed action, given the same input and that result. A nil
// compensation means there is nothing to undo (the step is still
// compensated: its compensation is recorded as done).
//
// The error an action returns decides what happens: nil completes the
// step; Abort(err) compensates the saga; any other error is retried with the
// step's backoff until its attempts run out, and then compensates. A
// compensation's errors are all retried; when its attempts run out the saga
// is parked as compensation_failed and the message is dead-lettered.
//
// A step in several versions of its flow (the same step value in each
// Define) is bound in each: the runner serves every one of those versions.
//
// Handle returns ErrInvalidFlow for a step that is in no flow,
// ErrInvalidOption for a nil action or for a compensation of a pivot or
// retriable step (they are never compensated), and ErrBound for a step
// already bound here or a runner already running.
func (r *Runner) Bind(tmpl *StepDef, act func(ctx context.Context, data []byte) ([]byte, error), comp func(ctx context.Context, inData, outData []byte) error) error {
	if !tmpl.Bound() {
		return fmt.Errorf("%w: step is not part of a defined flow", ErrInvalidFlow)
	}
	if act == nil {
		return fmt.Errorf("%w: step %s: nil action", ErrInvalidOption, tmpl.name)
	}
	if comp != nil && tmpl.kind != CompensatableStep {
		return fmt.Errorf("%w: step %s is %s: it is never compensated", ErrInvalidOption, tmpl.name, tmpl.kind)
	}
	if t := tmpl.timeout; t > 0 && t < 2*r.o.ackWait {
		r.j.opts.logger.Warn("choreo: step timeout is under twice the ack wait: a crash mid-step may time the step out before another instance runs it",
			"step", tmpl.name, "timeout", t, "ack_wait", r.o.ackWait)
	}
	// One binding per version the step is in (the newest definition of a
	// version defined twice).
	var uses []*stepDef
	for _, d := range tmpl.uses {
		uses = slices.DeleteFunc(uses, func(o *stepDef) bool { return o.flow.version == d.flow.version })
		if vs, ok := r.o.serve[d.flow.name]; !ok || slices.Contains(vs, d.flow.version) {
			uses = append(uses, d)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return fmt.Errorf("%w: runner already running", ErrBound)
	}
	for _, o := range r.bindings {
		for _, d := range uses {
			if o.def.flow.name == d.flow.name && o.def.flow.version == d.flow.version && o.def.name == d.name {
				return fmt.Errorf("%w: %s v%d/%s", ErrBound, d.flow.name, d.flow.version, d.name)
			}
		}
	}
	for _, d := range uses {
		r.j.define(d.flow)
		r.bindings = append(r.bindings, &binding{def: d, action: act, compensate: comp})
	}
	return nil
}

type endBinding struct {
	flow string
	name string
	fn   func(context.Context, *State) error
}

// OnEnd binds fn to every saga of flow f that reaches a terminal status:
// completed, compensated or compensation_failed (again after an operator
// retry). It runs through a durable consumer named for the flow and name,
// shared by every instance, so each end is handled once per name (at least
// once: fn must be idempotent). An error from fn is retried, but
// saga.Abort(err), an end fn can never handle (a saga of an order it does
// not know), dead-letters the end with the error as the reason. It returns
// ErrInvalidOption for a nil flow or function or a bad name, and ErrBound
// for a name already bound or a runner already running.
func (r *Runner) OnEnd(f FlowRef, handler string, fn func(ctx context.Context, st *State) error) error {
	if f == nil || fn == nil {
		return fmt.Errorf("%w: nil flow or function", ErrInvalidOption)
	}
	if !wire.Token(handler) || !wire.Token(name(f)) {
		return fmt.Errorf("%w: name %q must be 1-64 characters of [A-Za-z0-9_-]", ErrInvalidOption, handler)
	}
	r.j.defineRef(f)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return fmt.Errorf("%w: runner already running", ErrBound)
	}
	for _, e := range r.ends {
		if e.flow == name(f) && e.name == handler {
			return fmt.Errorf("%w: OnEnd %s/%s", ErrBound, e.flow, handler)
		}
	}
	r.ends = append(r.ends, endBinding{flow: name(f), name: handler, fn: fn})
	return nil
}

// Ready is closed once Run has created its consumers and is receiving.
func (r *Runner) Ready() <-chan struct{} { return r.ready }

type consumerSpec struct {
	stream     string
	name, desc string
	filters    []string
	flow       *flowDef
	handle     func(context.Context, *delivery)
}

// triggers are the subjects of the events that may trigger step d: a
// start, or the results of the position before it, of d's flow version.
func triggers(d *stepDef) []string {
	f := d.flow
	if d.pos == 0 {
		return []string{wire.LogFilter(f.name, f.version, wire.SagaStep, string(PhaseStart))}
	}
	var filters []string
	for _, prev := range f.positions[d.pos-1] {
		filters = append(filters, wire.LogFilter(f.name, f.version, prev.name, string(PhaseDone)))
	}
	return filters
}

func (r *Runner) specs() []consumerSpec {
	var out []consumerSpec
	flows := map[*flowDef]bool{}
	for _, b := range r.bindings {
		b, f := b, b.def.flow
		out = append(out, consumerSpec{
			stream: wire.Stream, name: wire.DoConsumer(f.name, f.version, b.def.name), filters: triggers(b.def), flow: f,
			desc:   fmt.Sprintf("choreo: flow %s v%d, step %s, action", f.name, f.version, b.def.name),
			handle: func(ctx context.Context, d *delivery) { r.onTrigger(ctx, b, d) },
		})
		if b.def.kind == CompensatableStep {
			out = append(out, consumerSpec{
				stream: wire.Stream, name: wire.UndoConsumer(f.name, f.version, b.def.name), flow: f,
				filters: []string{wire.Cmd + f.name + ".*." + wire.Version(f.version) + "." + b.def.name + "." + wire.Undo},
				desc:    fmt.Sprintf("choreo: flow %s v%d, step %s, compensation", f.name, f.version, b.def.name),
				handle:  func(ctx context.Context, d *delivery) { r.onUndo(ctx, b, d) },
			})
		}
		if !flows[f] {
			flows[f] = true
			out = append(out, consumerSpec{
				stream: wire.TimerStream, name: wire.TimerConsumer(f.name, f.version), filters: []string{wire.Timer + f.name + ".*." + wire.Version(f.version)}, flow: f,
				desc:   fmt.Sprintf("choreo: flow %s v%d, saga deadlines and expiry", f.name, f.version),
				handle: r.onTimer,
			})
		}
	}
	for _, e := range r.ends {
		e := e
		out = append(out, consumerSpec{
			stream: wire.Stream, name: wire.EndConsumer(e.flow, e.name), filters: []string{wire.Log + e.flow + ".>"},
			flow:   &flowDef{name: e.flow},
			desc:   fmt.Sprintf("choreo: flow %s, ends of sagas for %s", e.flow, e.name),
			handle: func(ctx context.Context, d *delivery) { r.onEnd(ctx, e, d) },
		})
	}
	return out
}

// Run creates the durable consumers of the bound steps and handles their
// messages until ctx ends. Then it stops receiving, waits for the handlers
// in flight (up to the drain timeout) and returns nil. Nothing is
// acknowledged that was not processed: what is left unfinished is
// redelivered, to this service's other instances or after a restart. It
// returns ErrBound when called twice, ErrUnsafeConfig for an existing
// consumer of choreo's name that would lose messages, or the broker's
// error.
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
	defer close(r.quit)
	var running []*attached
	stopAll := func() {
		for _, a := range running {
			a.cc.Stop()
		}
	}
	for _, s := range r.specs() {
		a := &attached{spec: s, pool: newPool(r.o.concurrency, r.quit)}
		cc, err := r.consume(ctx, hctx, a)
		if err != nil {
			stopAll()
			if ctx.Err() != nil {
				return nil // stopped while starting: nothing was received
			}
			return err
		}
		a.cc = cc
		running = append(running, a)
	}
	r.reportUnserved(ctx)
	if err := r.c.register(ctx, r.flows(), r.o.schemaOf); err != nil {
		r.j.opts.logger.Warn("choreo: cannot register the flow versions this runner serves; operator tools will not list them", "err", err)
	}
	close(r.ready)
	tick := time.NewTicker(reattachEvery)
	for wait := true; wait; {
		select {
		case <-ctx.Done():
			wait = false
		case <-tick.C:
			r.reattach(ctx, hctx, running)
		}
	}
	tick.Stop()

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
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			// A handler that ignores its context is left behind; its
			// message, never acknowledged, is redelivered.
			r.j.opts.logger.Error("choreo: handlers still running after the drain timeout and their context's end; Run returns without them")
		}
	}
	return nil
}

// reattach brings back the consumers that are gone, once their stream is
// there again (restored, or recreated by whoever provisions it): it
// consumes anew, as Run did at start. While one is missing it says so once,
// at error level; when all are back, it says that once too.
func (r *Runner) reattach(ctx, hctx context.Context, running []*attached) {
	back := 0
	for _, a := range running {
		if !a.gone.Load() {
			continue
		}
		a.gone.Store(false) // errors from here on are the new consumer's
		cc, err := r.consume(ctx, hctx, a)
		if err != nil {
			a.gone.Store(true)
			r.j.opts.logger.Debug("choreo: consumer still missing", "consumer", a.spec.name, "stream", a.spec.stream, "err", err)
			continue
		}
		a.cc.Stop()
		a.cc = cc
		back++
	}
	for _, a := range running {
		if a.gone.Load() {
			return
		}
	}
	r.mu.Lock()
	was := r.outage
	r.outage = false
	r.mu.Unlock()
	if was {
		r.j.opts.logger.Info("choreo: every consumer is back; steps are received again", "reattached", back)
	}
}

// missing reports whether a consume error means the consumer or its
// stream does not exist (deleted), rather than a passing failure.
func missing(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrStreamNotFound)
}

// consumeError handles an error of a's consume loop: one that says the
// consumer is missing marks it for reattach and is logged at error level
// once per outage; the rest (and the repeats) are debug lines.
func (r *Runner) consumeError(a *attached, err error) {
	if !missing(err) {
		r.j.opts.logger.Debug("choreo: consume", "consumer", a.spec.name, "err", err)
		return
	}
	a.gone.Store(true)
	r.mu.Lock()
	first := !r.outage && !r.stopping
	r.outage = true
	r.mu.Unlock()
	if first {
		r.j.opts.logger.Error("choreo: consumer missing (its stream or the consumer was deleted): its steps get nothing until it is back; the runner retries every "+reattachEvery.String(),
			"consumer", a.spec.name, "stream", a.spec.stream, "err", err)
		return
	}
	r.j.opts.logger.Debug("choreo: consume", "consumer", a.spec.name, "err", err)
}

// consume creates a's durable consumer and hands its messages to its
// handler, each in a goroutine of its own, at most the concurrency at once.
func (r *Runner) consume(ctx, hctx context.Context, a *attached) (jetstream.ConsumeContext, error) {
	s := a.spec
	sctx, cancel := withTimeout(ctx)
	defer cancel()
	why, err := jsutil.UnsafeConsumer(sctx, r.j.js, s.stream, s.name)
	if err == nil && why != "" {
		err = fmt.Errorf("%w: %s; delete it (nats consumer rm %s %s) and choreo recreates it", ErrUnsafeConfig, why, s.stream, s.name)
	}
	if err != nil {
		return nil, fmt.Errorf("saga: consumer %s: %w", s.name, err)
	}
	cons, err := r.j.js.CreateOrUpdateConsumer(sctx, s.stream, jetstream.ConsumerConfig{
		Durable:        s.name,
		Description:    s.desc,
		FilterSubjects: s.filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        r.o.ackWait,
		MaxAckPending:  r.o.concurrency,
		MaxDeliver:     -1,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		Replicas:       r.j.opts.replicas,
		MemoryStorage:  r.j.opts.memory,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: consumer %s: %w", s.name, err)
	}
	workers := a.pool
	cc, err := cons.Consume(func(m jetstream.Msg) {
		r.mu.Lock()
		if r.stopping {
			r.mu.Unlock()
			return // not acknowledged: redelivered later
		}
		r.inflight.Add(1)
		r.mu.Unlock()
		lm := keepAlive(m, r.o.ackWait, defaultTimeout)
		handle := func() {
			defer func() {
				if p := recover(); p != nil {
					r.j.opts.logger.Error("choreo: handler panic", "consumer", s.name, "subject", m.Subject(), "panic", p, "stack", string(debug.Stack()))
					_ = lm.NakWithDelay(time.Second)
				}
				lm.stop() // a message not settled is redelivered after the ack wait
				r.inflight.Done()
			}()
			d := r.delivery(lm, s.name, s.flow)
			ctx, sc := extract(hctx, lm.Headers())
			d.obs.trace = sc
			s.handle(ctx, d)
			if d.debug() {
				d.log().Debug("choreo: handled", "subject", d.src.subject)
			}
		}
		if !workers.run(handle) {
			lm.stop() // the runner stopped: redelivered later
			r.inflight.Done()
		}
	}, jetstream.PullMaxMessages(r.o.concurrency), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		r.consumeError(a, err)
	}))
	if err != nil {
		return nil, fmt.Errorf("saga: consume %s: %w", s.name, err)
	}
	return cc, nil
}

// flows returns the flow versions the runner serves steps of.
func (r *Runner) flows() []*flowDef {
	var out []*flowDef
	for _, b := range r.bindings {
		if !slices.Contains(out, b.def.flow) {
			out = append(out, b.def.flow)
		}
	}
	return out
}

// reportUnserved logs the steps of the runner's flow versions that no
// other runner is attached to: their sagas wait there until one starts.
func (r *Runner) reportUnserved(ctx context.Context) {
	for _, f := range r.flows() {
		var missing []string
		for _, d := range f.steps {
			mine := slices.ContainsFunc(r.bindings, func(b *binding) bool { return b.def == d })
			if !mine && !r.c.served(ctx, f.name, f.version, d.name) {
				missing = append(missing, d.name)
			}
		}
		if len(missing) > 0 {
			r.j.opts.logger.Info("choreo: steps no runner serves yet; their sagas wait until one does",
				"flow", f.name, "version", f.version, "steps", strings.Join(missing, ","))
		}
	}
}

// inputOf returns the encoded input of step d in saga id: the flow's input
// for the first position and after a group, else the previous step's
// result. trigger is the trigger's payload when it is that input.
func (r *Runner) inputOf(ctx context.Context, d *stepDef, id string, trigger []byte) ([]byte, error) {
	f := d.flow
	afterGroup := d.pos > 0 && len(f.positions[d.pos-1]) > 1
	switch {
	case afterGroup:
		// The trigger is the last member's result: the input is the flow's.
		return r.j.eventData(ctx, f.name, f.version, id, wire.SagaStep, PhaseStart)
	case trigger != nil:
		return trigger, nil
	case d.pos == 0:
		return r.j.eventData(ctx, f.name, f.version, id, wire.SagaStep, PhaseStart)
	}
	return r.j.eventData(ctx, f.name, f.version, id, f.positions[d.pos-1][0].name, PhaseDone)
}

// onTrigger handles an event that may trigger step b's action.
func (r *Runner) onTrigger(ctx context.Context, b *binding, d *delivery) {
	def := b.def
	if err := d.read(); err != nil {
		r.rejectTrigger(ctx, def, d, err.Error())
		return
	}
	env := d.env
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
	verdict := judgeTrigger(def, cur, env.state.Events, d.delivered, stale, time.Now())
	switch verdict {
	case triggerIgnore:
		_ = d.m.Ack() // not this step's trigger: a sibling's result, or another version's
		return
	case triggerSettled:
		d.settled(ctx, cur, curSeq)
		return
	case triggerRun:
	default:
		d.record(ctx, cur, curSeq, def.name, triggered(def, verdict, attempt, stepBound(def, cur)), nil)
		return
	}
	var trigger []byte
	if env.step == wire.SagaStep || env.phase == PhaseDone {
		trigger = d.m.Data()
	}
	input, err := r.inputOf(ctx, def, env.id, trigger)
	if err != nil {
		d.retryLater(err)
		return
	}
	bnd := stepBound(def, cur)
	info := Info{Flow: env.flow, Version: cur.Version, ID: env.id, Step: def.name, Phase: PhaseAction, Attempt: attempt}
	ctx, c := r.begin(ctx, d, info)
	defer c.end()
	if r.o.validate != nil {
		itype := def.flow.inputType
		if def.pos > 0 && len(def.flow.positions[def.pos-1]) == 1 {
			itype = def.flow.positions[def.pos-1][0].eventType
		}
		if verr := r.o.validate(itype, input); verr != nil {
			reason := fmt.Sprintf("schema-invalid %s: %v", itype, verr)
			v := failed(def, attempt, reason)
			v.deadLetter = reason
			c.judged(d, v, errors.New(reason))
			d.record(ctx, cur, curSeq, def.name, v, input)
			return
		}
	}
	actx := context.WithValue(ctx, infoKey{}, &runInfo{j: r.j, Info: info})
	if !bnd.at.IsZero() {
		var cancel context.CancelFunc
		actx, cancel = context.WithDeadline(actx, bnd.at)
		defer cancel()
	}
	var o outcome
	o.err = r.run(actx, d.m, func(ctx context.Context) (err error) {
		o.out, err = b.action(ctx, input)
		return err
	})
	o.late = bnd.passed(time.Now())
	if max := r.j.opts.maxEventSize; o.err == nil && len(o.out) > 1024 && len(o.out)+len(encodeState(cur))+4096 > max {
		o.tooLarge = max
	}
	v := judgeAction(def, attempt, o, bnd)
	c.judged(d, v, o.err)
	d.record(ctx, cur, curSeq, def.name, v, input)
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
	if err != nil || curSeq != d.src.seq || cur.Status != StatusRunning || cur.Step(def.name) == nil || cur.Step(def.name).Status != StepRunning {
		d.reject(ctx, reason)
		return
	}
	d.env = &envelope{flow: def.flow.name, id: id, version: def.flow.version, step: tok[5]}
	v := failed(def, d.delivered, "unusable trigger: "+reason)
	v.deadLetter = reason
	v.warn = "dead-lettering a trigger, its step fails"
	d.record(ctx, cur, curSeq, def.name, v, d.m.Data())
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
	if _, err := cur.due(def.name); err != nil || env.epoch != cur.Epoch {
		d.settled(ctx, cur, curSeq) // done already, not due, or from an earlier operator retry
		return
	}
	attempt := d.delivered
	info := Info{Flow: env.flow, Version: cur.Version, ID: env.id, Step: def.name, Phase: PhaseCompensation, Attempt: attempt}
	ctx, c := r.begin(ctx, d, info)
	defer c.end()
	var err error
	if b.compensate != nil {
		input, ierr := r.inputOf(ctx, def, env.id, nil)
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
	}
	v := judgeCompensation(def, attempt, err)
	c.judged(d, v, err)
	d.record(ctx, cur, curSeq, def.name, v, nil)
}

// onTimer handles a saga's timer: its deadline, or the end of an ended
// saga's retention.
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
	d.record(ctx, cur, curSeq, wire.SagaStep, verdict{done: true, phase: PhaseDeadline, apply: func(s *State, now time.Time) error {
		if fired && now.Before(s.Deadline) {
			now = s.Deadline
		}
		return s.expire(now)
	}}, nil)
}

// onEnd hands a terminal state to an OnEnd function. Every event whose
// state is terminal is the one that made it so: nothing is appended to a
// terminal saga but an operator's resume.
func (r *Runner) onEnd(ctx context.Context, e endBinding, d *delivery) {
	if !d.parse(ctx) {
		return
	}
	if why := rogue(d.m.Headers(), d.env, 0); why != "" {
		d.reject(ctx, why)
		return
	}
	st := d.env.state
	if !st.Status.Terminal() {
		_ = d.m.Ack()
		return
	}
	if !d.vouch(ctx) {
		return
	}
	ctx, span := r.endSpan(ctx, e.flow, e.name, st, d.delivered)
	defer span.End()
	if err := r.run(ctx, d.m, func(ctx context.Context) error { return e.fn(ctx, st.view()) }); err != nil {
		if IsAbort(err) {
			d.reject(ctx, "OnEnd "+e.name+": "+err.Error())
			return
		}
		d.log().Warn("choreo: OnEnd failed, will retry", "name", e.name, "err", err)
		_ = d.m.NakWithDelay(time.Second)
		return
	}
	_ = d.m.Ack()
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

// pool runs a consumer's messages on at most max goroutines that it keeps
// for the runner's life: a goroutine per message started with a small
// stack and grew it on every message (decoding a payload is deep), which
// cost a tenth of the runner's CPU in the benchmark.
type pool struct {
	work chan func()
	quit <-chan struct{}
	mu   sync.Mutex
	n    int
	max  int
}

func newPool(max int, quit <-chan struct{}) *pool {
	return &pool{work: make(chan func()), quit: quit, max: max}
}

// run hands fn to an idle worker, starts one if fewer than max exist, or
// waits for one to be free. It returns false, without running fn, once
// the runner has stopped.
func (p *pool) run(fn func()) bool {
	select {
	case p.work <- fn:
		return true
	default:
	}
	p.mu.Lock()
	if p.n < p.max {
		p.n++
		p.mu.Unlock()
		go p.worker(fn)
		return true
	}
	p.mu.Unlock()
	select {
	case p.work <- fn:
		return true
	case <-p.quit:
		return false
	}
}

func (p *pool) worker(fn func()) {
	for {
		fn()
		select {
		case fn = <-p.work:
		case <-p.quit:
			return
		}
	}
}
