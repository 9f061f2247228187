package kit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/services/kit"
)

func TestNewLogger(t *testing.T) {
	var b bytes.Buffer
	l, err := kit.NewLogger(&b, "warn")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "saga", "o-1")
	var line map[string]any
	if err := json.Unmarshal(b.Bytes(), &line); err != nil {
		t.Fatalf("off a terminal the logs are not JSON lines: %q", b.String())
	}
	if line["msg"] != "shown" || line["saga"] != "o-1" || strings.Contains(b.String(), "hidden") {
		t.Errorf("logged %q", b.String())
	}
	if _, err := kit.NewLogger(&b, "loud"); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("bad level: err = %v, want one line", err)
	}
}

func TestTracingByEnvironment(t *testing.T) {
	ctx := context.Background()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	stop, err := kit.Tracing(ctx, "order")
	if err != nil {
		t.Fatalf("tracing off by default: %v", err)
	}
	_ = stop(ctx)
	for env, val := range map[string]string{"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
			t.Setenv(env, val)
			if _, err := kit.Tracing(ctx, "order"); err == nil || !strings.Contains(err.Error(), env) {
				t.Errorf("%s=%s: err = %v, want one naming the variable", env, val, err)
			}
		})
	}
	// An OTLP exporter starts without reaching its collector.
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	stop, err = kit.Tracing(ctx, "order")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = stop(sctx) // nothing to flush
}

func TestMetricsObserver(t *testing.T) {
	m := kit.NewMetrics()
	m.Recorded(saga.Record{Flow: "order", Step: "_saga", Phase: saga.PhaseStart, Status: saga.StatusRunning})
	m.Handled(saga.Info{Flow: "order", Step: "charge", Phase: saga.PhaseAction, Attempt: 1}, saga.PhaseRetry, time.Millisecond)
	m.Recorded(saga.Record{Flow: "order", Step: "charge", Phase: saga.PhaseRetry, Status: saga.StatusRunning})
	m.Recorded(saga.Record{Flow: "order", Step: "charge", Phase: saga.PhaseParked, Status: saga.StatusCompensationFailed, Ended: true})
	m.DeadLettered("order", "why")
	m.Recorded(saga.Record{Flow: "order", Step: "_saga", Phase: saga.PhaseDeadline, Status: saga.StatusCompensating})
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			switch {
			case mt.Counter != nil:
				got[f.GetName()] += mt.Counter.GetValue()
			case mt.Histogram != nil:
				got[f.GetName()] += float64(mt.Histogram.GetSampleCount())
			}
		}
	}
	for name, want := range map[string]float64{"choreo_sagas_started_total": 1, "choreo_steps_handled_total": 1, "choreo_handler_duration_seconds": 1,
		"choreo_steps_retried_total": 1, "choreo_compensations_total": 1, "choreo_sagas_ended_total": 1, "choreo_dead_letters_total": 1,
		"choreo_sagas_deadline_total": 1} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}

// Only a loopback admin listener is private: the gateway serves its
// unauthenticated rebuild there alone.
func TestAdminPrivateOnLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:0": true, "0.0.0.0:0": false} {
		a := kit.NewAdmin(nil)
		ln, err := a.Listen(addr)
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		if a.Private() != want {
			t.Errorf("%s: private %v, want %v", addr, a.Private(), want)
		}
	}
	if kit.NewAdmin(nil).Private() {
		t.Error("an admin without a listener reads private")
	}
}
