package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-go/choreo/internal/wire"
)

// Tracing. A saga is one trace: Start opens it (under the span ctx
// carries, if any), and every action and compensation is a span whose
// parent is the span that recorded the event or command that caused it,
// so the trace runs from the start to the end of the saga across every
// service. The W3C trace context travels in one traceparent header on
// the saga's log events and commands, written only when the context
// holds a valid span context: with the default (the global
// TracerProvider, a no-op until the program sets one) nothing is added.

// tracerName is the instrumentation scope of choreo's spans.
const tracerName = "github.com/choreo-go/choreo/saga"

// Span attributes.
const (
	AttrFlow    = attribute.Key("choreo.flow")
	AttrVersion = attribute.Key("choreo.version")
	AttrSaga    = attribute.Key("choreo.saga_id")
	AttrStep    = attribute.Key("choreo.step")
	AttrPhase   = attribute.Key("choreo.phase")
	AttrAttempt = attribute.Key("choreo.attempt")
	AttrOutcome = attribute.Key("choreo.outcome")
)

// globalTracer is the default tracer: the global provider's, which
// delegates to the provider a program sets, if any, even after this.
var globalTracer = otel.Tracer(tracerName)

func defaultTracer() trace.Tracer { return globalTracer }

// unsetProvider is the global TracerProvider as it is before a program
// sets one: a delegate that is a no-op until then. nil if a provider was
// set before this package was initialised.
var unsetProvider = func() trace.TracerProvider {
	if tp := otel.GetTracerProvider(); fmt.Sprintf("%T", tp) == "*global.tracerProvider" {
		return tp
	}
	return nil
}()

// untraced reports whether a span started in ctx would be a no-op: the
// tracer is the default, no program has set a global provider, and ctx
// carries no span context to pass on. Then the runner starts none, which
// saves its allocations on every hop.
func (j *journal) untraced(ctx context.Context) bool {
	return j.opts.tracer == globalTracer && unsetProvider != nil && otel.GetTracerProvider() == unsetProvider &&
		!trace.SpanContextFromContext(ctx).IsValid()
}

// WithTracerProvider sets where choreo's spans go (default: the global
// TracerProvider, otel.GetTracerProvider, which is a no-op unless the
// program sets one).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) error {
		if tp == nil {
			return fmt.Errorf("%w: nil TracerProvider", ErrInvalidOption)
		}
		o.tracer = tp.Tracer(tracerName)
		return nil
	}
}

// traceContext is the W3C propagator: traceparent (and tracestate, which
// headerCarrier drops: log events carry few headers on purpose).
var traceContext propagation.TraceContext

// headerCarrier lets the propagator read and write a message's
// traceparent header.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string {
	if v := c[key]; len(v) == 1 {
		return v[0]
	}
	return ""
}

func (c headerCarrier) Set(key, value string) {
	if key == wire.TraceParent {
		c[key] = []string{value}
	}
}

func (c headerCarrier) Keys() []string { return []string{wire.TraceParent} }

// inject writes ctx's span context in h, when there is one.
func inject(ctx context.Context, h nats.Header) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		traceContext.Inject(ctx, headerCarrier(h))
	}
}

// extract returns ctx with the remote span context that h carries, if
// any, and that span context.
func extract(ctx context.Context, h nats.Header) (context.Context, trace.SpanContext) {
	if len(h[wire.TraceParent]) != 1 {
		return ctx, trace.SpanContext{}
	}
	ctx = traceContext.Extract(ctx, headerCarrier(h))
	return ctx, trace.SpanContextFromContext(ctx)
}

// traceIDOf returns the trace id of ctx's span, "" when there is none.
func traceIDOf(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
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
	if o := d.r.j.opts.observer; o != nil {
		o.Handled(c.info, v.phase, took)
	}
}

// end closes the span, once the outcome is recorded.
func (c *call) end() { c.span.End() }

// appendTraceID ends an encoded state with the saga's trace id, if it
// has one (codec.go).
func appendTraceID(b []byte, s *State) []byte {
	if s.TraceID == "" {
		return b
	}
	b = append(b, '|')
	return append(b, s.TraceID...)
}

// cutTraceID splits the trace id off an encoded state: the state has 12
// fields without one, 13 with.
func cutTraceID(raw string) (string, string, error) {
	if strings.Count(raw, "|") != 12 {
		return raw, "", nil
	}
	i := strings.LastIndexByte(raw, '|')
	id := raw[i+1:]
	if !validTraceID(id) {
		return "", "", bad("malformed choreo-state: bad trace id %q", id)
	}
	return raw[:i], id, nil
}

// validTraceID reports whether id is a W3C trace id: 32 lowercase hex
// digits, not all zero.
func validTraceID(id string) bool {
	t, err := trace.TraceIDFromHex(id)
	return err == nil && t.IsValid() && t.String() == id
}

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
