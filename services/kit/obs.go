package kit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/choreo-go/choreo/internal/wire"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/ops"
)

// Observability of the services: logs (slog), traces (OpenTelemetry, by
// the standard OTEL_* environment variables) and metrics (Prometheus, on
// an admin listener with /metrics).

// NewLogger returns the logger of a binary: JSON lines when w is not a
// terminal (a container, a file, a pipe), text for a person otherwise, at
// level (debug, info, warn or error).
func NewLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: l}
	if terminal(w) {
		return slog.New(slog.NewTextHandler(w, o)), nil
	}
	return slog.New(slog.NewJSONHandler(w, o)), nil
}

// terminal reports whether w is a character device (a terminal).
func terminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Tracing sets up OpenTelemetry tracing as the OTEL_* environment
// variables say, for the service name: OTEL_TRACES_EXPORTER=otlp (the
// default when an OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set) or none (the default
// otherwise: nothing is traced and the saga library adds no header);
// OTEL_EXPORTER_OTLP_PROTOCOL (or _TRACES_PROTOCOL) http/protobuf (the
// default) or grpc; the exporter's endpoint, headers and timeout from
// their standard variables; the sampler from OTEL_TRACES_SAMPLER;
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES. It sets the global
// TracerProvider and the W3C propagator, and returns what flushes and
// stops them (a no-op when off). The error is one line.
func Tracing(ctx context.Context, service string) (func(context.Context) error, error) {
	off := func(context.Context) error { return nil }
	exporter := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))
	if exporter == "" {
		exporter = "none"
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
			exporter = "otlp"
		}
	}
	switch exporter {
	case "none":
		return off, nil
	case "otlp":
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER %q: want otlp or none", exporter)
	}
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdktrace.SpanExporter
	var err error
	switch protocol {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf or grpc", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %v", oneLine(err))
	}
	res, err := resource.Merge(resource.NewSchemaless(attribute.String("service.name", "choreo-"+service)), resource.Environment())
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %v", oneLine(err))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return tp.Shutdown, nil
}

// Metrics are a process's Prometheus metrics: what its saga clients and
// runners do (it is their saga.Observer), the pending and ack-pending
// counts of their durable consumers, and the Go runtime's.
type Metrics struct {
	reg *prometheus.Registry

	handled   *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	failed    *prometheus.CounterVec
	retried   *prometheus.CounterVec
	comps     *prometheus.CounterVec
	started   *prometheus.CounterVec
	ended     *prometheus.CounterVec
	dead      *prometheus.CounterVec
	deadlines *prometheus.CounterVec
	consumers *consumerCollector
}

var _ saga.Observer = (*Metrics)(nil)

// NewMetrics returns metrics on a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "choreo_steps_handled_total",
			Help: "Handler calls (phase action or compensation) by step and the outcome recorded of them."}, []string{"flow", "version", "step", "phase", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "choreo_handler_duration_seconds",
			Help:    "How long a step's action or compensation took, from its call to its outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"flow", "version", "step", "phase"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "choreo_steps_failed_total",
			Help: "Steps recorded failed, timed out or abandoned: their saga compensates."}, []string{"flow", "version", "step", "outcome"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "choreo_steps_retried_total",
			Help: "Failed attempts recorded for a retry, of an action (phase action) or a compensation."}, []string{"flow", "version", "step", "phase"}),
		comps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "choreo_compensations_total",
			Help: "Compensations recorded: compensated, or parked (out of attempts)."}, []string{"flow", "version", "step", "outcome"}),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "choreo_sagas_started_total",
			Help: "Sagas started by this process."}, []string{"flow", "version"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "choreo_sagas_ended_total",
			Help: "Sagas this process recorded the end of, by status (completed, compensated, compensation_failed)."}, []string{"flow", "version", "status"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "choreo_dead_letters_total",
			Help: "Messages this process copied to the dead letters."}, []string{"flow"}),
		deadlines: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "choreo_sagas_deadline_total",
			Help: "Sagas this process recorded past their deadline: each compensates."}, []string{"flow", "version"}),
		consumers: &consumerCollector{
			pending: prometheus.NewDesc("choreo_consumer_pending", "Messages a durable consumer has not delivered yet.", []string{"stream", "consumer"}, nil),
			ackPending: prometheus.NewDesc("choreo_consumer_ack_pending", "Messages a durable consumer delivered and awaits the acknowledgement of.",
				[]string{"stream", "consumer"}, nil),
			deadLetters: prometheus.NewDesc("choreo_dead_letter_stream_messages", "Messages in the dead-letter stream.", nil, nil),
			stepPending: prometheus.NewDesc("choreo_step_pending", "Triggers of a registered flow version's step that its consumer has not delivered yet.",
				[]string{"flow", "version", "step"}, nil),
			stepAttached: prometheus.NewDesc("choreo_step_attached",
				"1 when a runner is attached to a registered flow version's step (a pull waiting, or triggers in its hands), 0 when none is: its sagas wait.",
				[]string{"flow", "version", "step"}, nil),
		},
	}
	m.reg.MustRegister(m.handled, m.latency, m.failed, m.retried, m.comps, m.started, m.ended, m.dead, m.deadlines, m.consumers,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the metrics are registered: a service may add its own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Handled implements saga.Observer.
func (m *Metrics) Handled(info saga.Info, outcome saga.Phase, took time.Duration) {
	m.handled.WithLabelValues(info.Flow, strconv.Itoa(info.Version), info.Step, string(info.Phase), string(outcome)).Inc()
	m.latency.WithLabelValues(info.Flow, strconv.Itoa(info.Version), info.Step, string(info.Phase)).Observe(took.Seconds())
}

// Recorded implements saga.Observer.
func (m *Metrics) Recorded(r saga.Record) {
	switch r.Phase {
	case saga.PhaseStart:
		m.started.WithLabelValues(r.Flow, strconv.Itoa(r.Version)).Inc()
	case saga.PhaseFailed, saga.PhaseTimedOut, saga.PhaseAbandoned:
		m.failed.WithLabelValues(r.Flow, strconv.Itoa(r.Version), r.Step, string(r.Phase)).Inc()
	case saga.PhaseRetry:
		m.retried.WithLabelValues(r.Flow, strconv.Itoa(r.Version), r.Step, string(saga.PhaseAction)).Inc()
	case saga.PhaseCompensationRetry:
		m.retried.WithLabelValues(r.Flow, strconv.Itoa(r.Version), r.Step, string(saga.PhaseCompensation)).Inc()
	case saga.PhaseCompensated, saga.PhaseParked:
		m.comps.WithLabelValues(r.Flow, strconv.Itoa(r.Version), r.Step, string(r.Phase)).Inc()
	case saga.PhaseDeadline:
		m.deadlines.WithLabelValues(r.Flow, strconv.Itoa(r.Version)).Inc()
	}
	if r.Ended {
		m.ended.WithLabelValues(r.Flow, strconv.Itoa(r.Version), string(r.Status)).Inc()
	}
}

// DeadLettered implements saga.Observer.
func (m *Metrics) DeadLettered(flow, reason string) { m.dead.WithLabelValues(flow).Inc() }

// Watch adds the durable consumers of r, read through js, to the
// consumer metrics: their counts are read from the broker at each scrape.
func (m *Metrics) Watch(js jetstream.JetStream, r *saga.Runner) {
	m.consumers.mu.Lock()
	defer m.consumers.mu.Unlock()
	m.consumers.runners = append(m.consumers.runners, watched{js, r})
}

// WatchSteps adds, for every step of every flow version registered (read
// with op at each scrape), whether a runner is attached to the step's
// consumer and how many triggers wait in it (choreo_step_attached,
// choreo_step_pending): a step no running service serves shows in the
// metrics of any other. Any identity may read these (access.Base).
func (m *Metrics) WatchSteps(js jetstream.JetStream, op *ops.Client) {
	m.consumers.mu.Lock()
	defer m.consumers.mu.Unlock()
	m.consumers.steps = &watchedSteps{js: js, op: op}
}

type watchedSteps struct {
	js jetstream.JetStream
	op *ops.Client

	// The registry is listed at most once a stepFlowsTTL (listing its keys
	// takes a consumer of the broker's); the consumers are read at every
	// scrape.
	mu    sync.Mutex
	flows []describe.Flow
	at    time.Time
}

// stepFlowsTTL is how long the step metrics keep the registry's list of
// flow versions: a version registered since shows within it.
const stepFlowsTTL = 30 * time.Second

func (w *watchedSteps) registered(ctx context.Context) ([]describe.Flow, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.flows != nil && time.Since(w.at) < stepFlowsTTL {
		return w.flows, nil
	}
	flows, err := w.op.Flows(ctx)
	if err != nil {
		return nil, err
	}
	w.flows, w.at = flows, time.Now()
	return flows, nil
}

type watched struct {
	js jetstream.JetStream
	r  *saga.Runner
}

// consumerCollector reads the watched consumers' counts at each scrape.
type consumerCollector struct {
	pending, ackPending, deadLetters *prometheus.Desc
	stepPending, stepAttached        *prometheus.Desc

	mu      sync.Mutex
	runners []watched
	steps   *watchedSteps
}

func (c *consumerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.deadLetters
	ch <- c.stepPending
	ch <- c.stepAttached
}

func (c *consumerCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	runners := append([]watched(nil), c.runners...)
	steps := c.steps
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if steps != nil {
		c.collectSteps(ctx, steps, ch)
	}
	seen := map[saga.Consumer]bool{}
	dlq := false
	for _, w := range runners {
		for _, cons := range w.r.Consumers() {
			if seen[cons] {
				continue
			}
			seen[cons] = true
			ci, err := w.js.Consumer(ctx, cons.Stream, cons.Name)
			if err != nil {
				continue // not created yet, or the broker is away: no figure
			}
			info := ci.CachedInfo()
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), cons.Stream, cons.Name)
			ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), cons.Stream, cons.Name)
		}
		if !dlq {
			if s, err := w.js.Stream(ctx, access.DeadLetterStream); err == nil {
				dlq = true
				ch <- prometheus.MustNewConstMetric(c.deadLetters, prometheus.GaugeValue, float64(s.CachedInfo().State.Msgs))
			}
		}
	}
}

// collectSteps reports each registered step's consumer: a consumer that
// does not exist has no runner attached and nothing counted pending.
func (c *consumerCollector) collectSteps(ctx context.Context, w *watchedSteps, ch chan<- prometheus.Metric) {
	flows, err := w.registered(ctx)
	if err != nil {
		return // the broker is away: no figure
	}
	for _, f := range flows {
		v := strconv.Itoa(f.Version)
		for _, s := range f.Steps {
			var pending, attached float64
			ci, err := w.js.Consumer(ctx, wire.Stream, wire.DoConsumer(f.Name, f.Version, s.Name))
			switch {
			case errors.Is(err, jetstream.ErrConsumerNotFound):
			case err != nil:
				continue
			default:
				info := ci.CachedInfo()
				pending = float64(info.NumPending)
				// A runner that consumes keeps pull requests waiting at
				// the broker, or holds triggers it has not acknowledged.
				if info.NumWaiting > 0 || info.NumAckPending > 0 {
					attached = 1
				}
			}
			ch <- prometheus.MustNewConstMetric(c.stepPending, prometheus.GaugeValue, pending, f.Name, v, s.Name)
			ch <- prometheus.MustNewConstMetric(c.stepAttached, prometheus.GaugeValue, attached, f.Name, v, s.Name)
		}
	}
}

// Admin is a process's admin HTTP listener: /metrics, and what the
// services add (the gateway's read-model rebuild). Bind it to a private
// address: it has no authentication.
type Admin struct {
	Mux     *http.ServeMux
	Metrics *Metrics
	private bool // its listener takes loopback connections only
}

// Private reports whether the admin listener binds a loopback address
// only: what an unauthenticated act (the gateway's POST /admin/rebuild)
// needs. A listener on 0.0.0.0 (the compose stack's, for Prometheus) is
// reachable from every container on its network.
func (a *Admin) Private() bool { return a.private }

// NewAdmin returns an admin mux serving m on /metrics (none when m is
// nil).
func NewAdmin(m *Metrics) *Admin {
	a := &Admin{Mux: http.NewServeMux(), Metrics: m}
	if m != nil {
		a.Mux.Handle("GET /metrics", m.Handler())
	}
	return a
}

// Listen checks addr (host:port) and listens on it: a bad address is a
// one-line error at start-up.
func (a *Admin) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %v", addr, oneLine(err))
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok {
		a.private = tcp.IP.IsLoopback()
	}
	return ln, nil
}

// Serve serves the admin mux on ln until ctx ends.
func (a *Admin) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a.Mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 2 * time.Minute}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
