package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// The case: with tracing on and a JSON logger at debug, every
// line about a message names its flow, saga, step, phase, attempt and
// trace id; a failed attempt, an abort, a compensation, a parked saga and
// its dead letter each log a line at warn or error; the runner shows each
// message it handled at debug.
func TestLogLinesAboutMessages(t *testing.T) {
	var logs syncBuffer
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e := &env{srv: sagatest.NewServer(t), l: newLedger(), rec: sagatest.NewRecorder()}
	e.c = e.srv.Client(saga.WithTracerProvider(tp), saga.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	e.s = newShop(t, 0, func(s *shop) {
		s.chargeOpts = []saga.StepOption{saga.WithRetry(fastRetries(3))}
		s.reserveOpts = []saga.StepOption{saga.WithCompensationRetry(fastRetries(2))}
	})
	e.startRunner(t)
	// p1: the charge fails once, the invoice aborts once the reservation is
	// done, whose compensation fails for good: the saga parks.
	e.l.on("p1", "charge:action", func(_ context.Context, attempt int) error {
		if attempt == 1 {
			return errors.New("card network busy")
		}
		return nil
	})
	awaitReserve := func(id string) func(context.Context, int) error {
		return func(context.Context, int) error {
			sagatest.Poll(t, 20*time.Second, func() bool { return e.l.count(id, "reserve", saga.PhaseAction) == 1 }, func() string { return "reserve never ran" })
			return saga.Abortf("no invoice today")
		}
	}
	e.l.on("p1", "invoice:action", awaitReserve("p1"))
	e.l.on("p1", "reserve:compensation", func(context.Context, int) error { return errors.New("warehouse offline") })
	// p2: the invoice aborts, and the saga compensates.
	e.l.on("p2", "invoice:action", awaitReserve("p2"))
	e.start(t, "p1")
	e.start(t, "p2")
	p1 := e.await(t, "p1", saga.StatusCompensationFailed)
	p2 := e.await(t, "p2", saga.StatusCompensated)
	traceOf := map[string]string{"p1": p1.TraceID, "p2": p2.TraceID}

	type line map[string]any
	wants := []struct {
		saga, level, msg, step string
	}{
		{"p1", "WARN", "step attempt failed, will retry", "charge"},
		{"p1", "WARN", "step failed, the saga compensates", "invoice"},
		{"p1", "WARN", "compensation attempt failed, will retry", "reserve"},
		{"p1", "ERROR", "saga parked", "reserve"},
		{"p1", "WARN", "dead-lettering", "reserve"},
		{"p2", "WARN", "step compensated", "charge"},
		{"p2", "WARN", "step compensated", "reserve"},
		{"p1", "DEBUG", "choreo: handled", "charge"},
	}
	var lines []line
	sagatest.Poll(t, 20*time.Second, func() bool {
		lines = nil
		for _, raw := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var l line
			if err := json.Unmarshal([]byte(raw), &l); err != nil {
				t.Fatalf("not a JSON line: %q", raw)
			}
			lines = append(lines, l)
		}
	next:
		for _, w := range wants {
			for _, l := range lines {
				if l["saga"] == w.saga && l["level"] == w.level && strings.Contains(l["msg"].(string), w.msg) && l["step"] == w.step {
					continue next
				}
			}
			return false
		}
		return true
	}, func() string { return fmt.Sprintf("want lines %+v in:\n%s", wants, logs.String()) })
	for _, l := range lines {
		id, ok := l["saga"].(string)
		if !ok {
			continue
		}
		for _, k := range []string{"flow", "step", "phase", "attempt"} {
			if l[k] == nil || l[k] == "" {
				t.Errorf("line about saga %s has no %s: %v", id, k, l)
			}
		}
		if l["trace_id"] != traceOf[id] {
			t.Errorf("line about saga %s has trace id %v, want %s: %v", id, l["trace_id"], traceOf[id], l)
		}
	}
}
