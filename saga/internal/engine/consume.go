package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/internal/wire"
	"github.com/nats-io/nats.go/jetstream"
)

// Consumer names a durable consumer a runner uses.
type Consumer struct {
	Stream, Name string
}

// Consumers lists the durable consumers Run creates for what is bound
// to r: to watch their pending and acknowledgement-pending counts.
func (r *Runner) Consumers() []Consumer {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Consumer
	for _, s := range r.specs() {
		out = append(out, Consumer{Stream: s.stream, Name: s.name})
	}
	return out
}

// register attests the definitions a runner serves: under
// def.<flow>.v<N>.<owner> for each owner of the steps it runs (unowned for
// steps that declare none), when the key holds none or another.
func (c *Client) register(ctx context.Context, bindings []*binding, schemaOf func(eventType string) ([]byte, error)) error {
	done := map[string]bool{}
	for _, b := range bindings {
		f, owner := b.def.flow, b.def.owner
		if owner == "" {
			owner = unowned
		}
		key := attestKey(f.name, f.version, owner)
		if done[key] {
			continue
		}
		done[key] = true
		fi := describeFlow(f)
		if schemaOf != nil {
			fi = fi.WithSchemas(schemaOf)
		}
		want, err := json.Marshal(fi)
		if err != nil {
			return err
		}
		if e, err := c.reg.kv.Get(ctx, key); err == nil && string(e.Value()) == string(want) {
			continue
		}
		if _, err := c.reg.kv.Put(ctx, key, want); err != nil {
			return fmt.Errorf("saga: register %s v%d as %s: %w", f.name, f.version, owner, err)
		}
	}
	return nil
}

// attached is one of Run's consumers and what it knows of its health.
type liveConsumer struct {
	spec consumerSpec
	cc   jetstream.ConsumeContext
	pool *pool       // its workers, kept across reattaches
	gone atomic.Bool // the broker said the consumer or its stream is missing
}

// reattachEvery is how often Run tries to bring back a consumer that is
// gone (its stream deleted, or the consumer itself).
const reattachEvery = 2 * time.Second

// sweepEvery is how often a runner looks for its overdue step timers
// (sweep.go).
const sweepEvery = 5 * time.Second

type consumerSpec struct {
	stream     string
	name, desc string
	filters    []string
	flow       *flowDef
	// step is, for the consumers of a step's action (the ones an
	// operator's PauseStep pauses), the step's name.
	step   string
	handle func(context.Context, *delivery)
}

// triggers are the subjects of the events that may trigger step d: a
// start or the begin of a scheduled saga, or the results of the position
// before it, of d's flow version.
func triggers(d *stepDef) []string {
	f := d.flow
	if d.pos == 0 {
		return []string{wire.LogFilter(f.name, f.version, wire.SagaStep, string(PhaseStart)),
			wire.LogFilter(f.name, f.version, wire.SagaStep, string(PhaseBegin))}
	}
	var filters []string
	for _, prev := range f.positions[d.pos-1] {
		filters = append(filters, wire.LogFilter(f.name, f.version, prev.name, string(PhaseDone)))
	}
	return filters
}

// doFilters are the subjects a step's action consumer reads: its
// triggers, and the resume of a paused saga, which runs the steps held
// meanwhile (onUnpause).
func doFilters(d *stepDef) []string {
	return append(triggers(d), wire.LogFilter(d.flow.name, d.flow.version, wire.SagaStep, string(PhaseUnpaused)))
}

func (r *Runner) specs() []consumerSpec {
	var out []consumerSpec
	flows := map[*flowDef]bool{}
	for _, b := range r.bindings {
		b, f := b, b.def.flow
		out = append(out, consumerSpec{
			stream: wire.Stream, name: wire.DoConsumer(f.name, f.version, b.def.name), filters: doFilters(b.def), flow: f, step: b.def.name,
			desc:   fmt.Sprintf("choreo: flow %s v%d, step %s, action", f.name, f.version, b.def.name),
			handle: func(ctx context.Context, d *delivery) { r.onTrigger(ctx, b, d) },
		})
		if b.def.Waits() {
			out = append(out, consumerSpec{
				stream: wire.TimerStream, name: wire.WaitConsumer(f.name, f.version, b.def.name), flow: f, step: b.def.name,
				filters: []string{wire.StepTimerSubject(f.name, "*", f.version, b.def.name)},
				desc:    fmt.Sprintf("choreo: flow %s v%d, step %s, waits and their retries", f.name, f.version, b.def.name),
				handle:  func(ctx context.Context, d *delivery) { r.onStepTimer(ctx, b, d) },
			})
		}
		if b.def.onTopic != "" {
			out = append(out, consumerSpec{
				stream: wire.EventStream, name: wire.EventConsumer(f.name, f.version, b.def.name), flow: f, step: b.def.name,
				filters: []string{wire.EventPrefix + b.def.onTopic},
				desc:    fmt.Sprintf("choreo: flow %s v%d, step %s, completed by %s events", f.name, f.version, b.def.name, b.def.onTopic),
				handle:  func(ctx context.Context, d *delivery) { r.onEvent(ctx, b, d) },
			})
		}
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
	for _, e := range r.children {
		e := e
		out = append(out, consumerSpec{
			stream: wire.Stream, name: wire.ChildEndConsumer(e.child.name, e.parent, e.step), filters: []string{wire.Log + e.child.name + ".>"},
			flow:   &flowDef{name: e.child.name},
			desc:   fmt.Sprintf("choreo: flow %s, ends of the child sagas of %s/%s", e.child.name, e.parent, e.step),
			handle: func(ctx context.Context, d *delivery) { r.onChildEnd(ctx, e, d) },
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
	var running []*liveConsumer
	stopAll := func() {
		for _, a := range running {
			if a.cc != nil {
				a.cc.Stop()
			}
		}
	}
	for _, s := range r.specs() {
		a := &liveConsumer{spec: s, pool: newPool(r.o.concurrency, r.quit)}
		cc, err := r.consume(ctx, hctx, a)
		if err != nil && consumerGone(err) && ctx.Err() == nil {
			// Its stream went missing while the runner started (deleted
			// after the client made it): an outage like one after the
			// start, said once, and reattached when the stream is back.
			r.consumeError(a, err)
			running = append(running, a)
			continue
		}
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
	if err := r.c.register(ctx, r.bindings, r.o.schemaOf); err != nil {
		r.j.opts.logger.Warn("choreo: cannot register the flow versions this runner serves; operator tools will not list them", "err", err)
	}
	close(r.ready)
	tick := time.NewTicker(reattachEvery)
	swept := time.Now()
	for wait := true; wait; {
		select {
		case <-ctx.Done():
			wait = false
		case <-tick.C:
			r.reattach(ctx, hctx, running)
			if time.Since(swept) >= sweepEvery {
				swept = time.Now()
				r.j.sweepWaits(ctx)
			}
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
func (r *Runner) reattach(ctx, hctx context.Context, running []*liveConsumer) {
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
		if a.cc != nil {
			a.cc.Stop()
		}
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

// consumerGone reports whether a consume error means the consumer or its
// stream does not exist (deleted), rather than a passing failure.
func consumerGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrStreamNotFound)
}

// consumeError handles an error of a's consume loop: one that says the
// consumer is missing marks it for reattach and is logged at error level
// once per outage; the rest (and the repeats) are debug lines.
func (r *Runner) consumeError(a *liveConsumer, err error) {
	if !consumerGone(err) {
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
func (r *Runner) consume(ctx, hctx context.Context, a *liveConsumer) (jetstream.ConsumeContext, error) {
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
	// A step an operator paused stays paused through a runner's restart:
	// the pause is in the registry, and the consumer is (re)created
	// paused. Read again after the create, a pause recorded meanwhile is
	// applied here, or else was recorded after the create, and its own
	// act paused the consumer.
	var pauseUntil *time.Time
	if s.step != "" {
		p, paused, err := r.c.stepPaused(sctx, s.flow.name, s.flow.version, s.step)
		if err != nil {
			return nil, fmt.Errorf("saga: consumer %s: read its pause: %w", s.name, err)
		}
		if paused {
			u := p.until()
			pauseUntil = &u
		}
	}
	cons, err := r.j.js.CreateOrUpdateConsumer(sctx, s.stream, jetstream.ConsumerConfig{
		PauseUntil:     pauseUntil,
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
	if s.step != "" && pauseUntil == nil {
		p, paused, err := r.c.stepPaused(sctx, s.flow.name, s.flow.version, s.step)
		if err == nil && paused {
			_, err = r.j.js.PauseConsumer(sctx, s.stream, s.name, p.until())
		}
		if err != nil {
			return nil, fmt.Errorf("saga: consumer %s: apply its pause: %w", s.name, err)
		}
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
			d := newDelivery(r.j, r.o.onRecorded, lm, s.name, s.flow)
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
