package main

import (
	"context"
	"strings"

	"fmt"
	"github.com/nats-io/nats.go/jetstream"
	"os"
	"strconv"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/ops"
)

const flowName = "bench"

// benchFlow is the flow every choreo run uses: its sagas start with a Payload.
type benchFlow = saga.Flow[Payload]

// defineFlow defines the flow bench: the steps in sequence.
func defineFlow(steps []*saga.Step[Payload, Payload]) (*benchFlow, error) {
	items := make([]saga.Item, len(steps))
	for i, s := range steps {
		items[i] = s
	}
	return saga.Define[Payload](flowName, 1, items...)
}

// startSaga starts saga id of flow f.
func startSaga(ctx context.Context, c *saga.Client, f *benchFlow, id string, in Payload) error {
	return saga.Start(ctx, c, f, id, in)
}

// longRunOptions are the client options of the long run.
func longRunOptions() []saga.Option {
	// A short retention, so that the run shows ended sagas leaving the
	// stream while new ones start: the subject count levels off.
	return []saga.Option{saga.WithRetention(10 * time.Second)}
}

type choreoSys struct {
	js   jetstream.JetStream
	c    *saga.Client
	flow *benchFlow
	gen  payloadGen
}

// describe says where saga id stands, for a saga not seen done in time.
func (s *choreoSys) describe(id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.c.Get(ctx, s.flow, id)
	if err != nil {
		return err.Error()
	}
	out := string(st.Status)
	for _, x := range st.Steps {
		out += fmt.Sprintf(" %s=%s/%d", x.Name, x.Status, x.Attempts)
	}
	if op, err := ops.Open(ctx, s.js); err == nil {
		if dead, err := op.DeadLetters(ctx, flowName); err == nil {
			for _, d := range dead {
				if strings.Contains(d.Subject, "."+id+".") {
					out += fmt.Sprintf("; dead letter %s by %s: %s", d.Subject, d.Consumer, d.Reason)
				}
			}
		}
	}
	return out
}

func (s *choreoSys) start(ctx context.Context, id string) error {
	return startSaga(ctx, s.c, s.flow, id, s.gen(id))
}

// stepName is the name of step i (1-based).
func stepName(i int) string { return "s" + strconv.Itoa(i) }

// setupChoreo runs a flow of n steps s1..sn, each adding one to Hop, with
// runners of concurrency 256, and observes each saga's last done event.
// perService gives each step the owner, connection, client and runner of
// a service of its own (step si is service si's), as in the shop: none of
// them appended the event before its trigger, so each checks it by reading
// the saga's log. Without it one runner and client serve every step.
func setupChoreo(ctx context.Context, e *env, n int, gen payloadGen, opts []saga.Option, perService bool, done func(string)) (system, func(), error) {
	c, err := saga.New(ctx, e.js, opts...)
	if err != nil {
		return nil, nil, err
	}
	steps := make([]*saga.Step[Payload, Payload], n)
	for i := range steps {
		steps[i] = saga.NewStep[Payload, Payload](stepName(i+1), saga.Owner(stepName(i+1)))
	}
	flow, err := defineFlow(steps)
	if err != nil {
		return nil, nil, err
	}
	var runners []*saga.Runner
	undo := func(context.Context, Payload, Payload) error { return nil }
	for i, s := range steps {
		if i == 0 || perService {
			rc := c
			if perService {
				js, err := e.connect()
				if err == nil {
					rc, err = saga.New(ctx, js, opts...)
				}
				if err != nil {
					return nil, nil, err
				}
			}
			r, err := saga.NewRunner(rc, saga.WithConcurrency(benchConcurrency()))
			if err != nil {
				return nil, nil, err
			}
			runners = append(runners, r)
		}
		if err := saga.Handle(runners[len(runners)-1], s, func(ctx context.Context, p Payload) (Payload, error) {
			p.Hop++
			return p, nil
		}, undo); err != nil {
			return nil, nil, err
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, len(runners))
	for _, r := range runners {
		go func() { errc <- r.Run(rctx) }()
	}
	wait := func() {
		cancel()
		for range runners {
			<-errc
		}
	}
	for _, r := range runners {
		select {
		case <-r.Ready():
		case err := <-errc:
			wait()
			return nil, nil, err
		}
	}
	// choreo.log.<flow>.<id>.v<N>.<step>.<phase>: the id is token 3.
	last := fmt.Sprintf("choreo.log.%s.*.v1.%s.done", flowName, stepName(n))
	stopObs, err := observe(ctx, e.js, access.StreamName, last, 3, done)
	if err != nil {
		wait()
		return nil, nil, err
	}
	return &choreoSys{js: e.js, c: c, flow: flow, gen: gen}, func() { stopObs(); wait() }, nil
}

// benchOptions are the client options of every run but the long one.
// BENCH_NO_RETENTION keeps ended sagas; BENCH_UNCHECKED turns the check
// of each event against the one before it off (saga.WithUncheckedEvents);
// BENCH_ENCRYPT seals every payload (saga.WithKeyRing).
func benchOptions(replicas int) []saga.Option {
	var opts []saga.Option
	if replicas > 1 {
		opts = append(opts, access.WithReplicas(replicas))
	}
	if os.Getenv("BENCH_NO_RETENTION") != "" {
		opts = append(opts, saga.WithRetention(0))
	}
	if os.Getenv("BENCH_UNCHECKED") != "" {
		opts = append(opts, saga.WithUncheckedEvents())
	}
	if os.Getenv("BENCH_TRACE") != "" {
		opts = append(opts, saga.WithTracerProvider(benchTracer()))
	}
	if os.Getenv("BENCH_ENCRYPT") != "" {
		opts = append(opts, saga.WithKeyRing(benchRing()))
	}
	return opts
}

// benchRing is, with BENCH_ENCRYPT, a key ring of one AES-256 key: every
// payload is sealed and every error's text too (saga.WithKeyRing).
var benchRing = sync.OnceValue(func() *saga.KeyRing {
	r, err := saga.NewKeyRing(saga.Key{ID: "bench", Secret: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		panic(err)
	}
	return r
})

// benchTracer is, with BENCH_TRACE, an OpenTelemetry SDK that samples
// every saga and exports its spans in batches to nowhere: what tracing
// costs the process, short of the network.
var benchTracer = sync.OnceValue(func() *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardSpans{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
})

type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// benchConcurrency is the runner's concurrency (BENCH_CONCURRENCY, default 256).
func benchConcurrency() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_CONCURRENCY")); err == nil && n > 0 {
		return n
	}
	return 256
}
