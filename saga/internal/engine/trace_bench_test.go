package engine

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// BenchmarkHopObservation is what tracing adds to one hop of a runner
// ("none" is the baseline without it):
// reading the incoming trace context, a span around the handler call,
// its outcome, and the trace context on the event it records. "off" is
// the default (the global provider, no SDK set); "on" an SDK that samples
// everything and exports in batches to nowhere.
func BenchmarkHopObservation(b *testing.B) {
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardSpans{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer func() { _ = sdk.Shutdown(context.Background()) }()
	for _, c := range []struct {
		name   string
		tracer trace.Tracer
	}{{"none", nil}, {"off", defaultTracer()}, {"on", sdk.Tracer(tracerName)}} {
		b.Run(c.name, func(b *testing.B) {
			r := &Runner{j: &journal{opts: &options{tracer: c.tracer}}}
			in := nats.Header{}
			if c.name == "on" {
				ctx, sp := sdk.Tracer("parent").Start(context.Background(), "parent")
				inject(ctx, in)
				sp.End()
			}
			info := Info{Flow: "order", Version: 1, ID: "o-1", Step: "charge", Phase: PhaseAction, Attempt: 1}
			v := verdict{phase: PhaseDone}
			b.ReportAllocs()
			for b.Loop() {
				d := &delivery{j: r.j}
				if c.tracer == nil { // the baseline: what the hop does without any of it
					d.obs.info = info
					_ = nats.Header{}
					continue
				}
				ctx, sc := extract(context.Background(), in)
				d.obs.trace = sc
				ctx, call := r.begin(ctx, d, info)
				call.judged(d, v, nil)
				out := nats.Header{}
				inject(ctx, out)
				call.end()
			}
		})
	}
}
