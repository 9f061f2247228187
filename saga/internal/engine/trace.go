package engine

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
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
