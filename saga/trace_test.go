package saga_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// tracedEnv is newEnv with a client whose spans go to an in-memory
// exporter.
func tracedEnv(t *testing.T, tweak func(*shop)) (*env, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e := &env{srv: sagatest.NewServer(t), l: newLedger(), rec: sagatest.NewRecorder()}
	e.c = e.srv.Client(saga.WithTracerProvider(tp))
	e.s = newShop(t, 0, tweak)
	t.Cleanup(func() {
		if !t.Failed() {
			e.checkLog(t) // a state with a trace id checks as honest
		}
	})
	e.startRunner(t)
	// A second service sees each saga end.
	r, err := saga.NewRunner(e.c)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.OnEnd(e.s.flow, "audit", func(context.Context, *saga.State) error { return nil }); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	return e, exp
}

// spanTree is the spans of one trace, by name.
type spanTree struct {
	byID   map[trace.SpanID]tracetest.SpanStub
	byName map[string]tracetest.SpanStub
}

// awaitSpans waits until the exporter holds the spans named, and returns
// the spans of the trace.
func awaitSpans(t *testing.T, exp *tracetest.InMemoryExporter, traceID string, names ...string) spanTree {
	t.Helper()
	var tree spanTree
	sagatest.Poll(t, 20*time.Second, func() bool {
		tree = spanTree{byID: map[trace.SpanID]tracetest.SpanStub{}, byName: map[string]tracetest.SpanStub{}}
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID().String() != traceID {
				continue
			}
			tree.byID[s.SpanContext.SpanID()] = s
			tree.byName[s.Name] = s
		}
		for _, n := range names {
			if _, ok := tree.byName[n]; !ok {
				return false
			}
		}
		return true
	}, func() string {
		var got []string
		for _, s := range exp.GetSpans() {
			got = append(got, s.Name+"@"+s.SpanContext.TraceID().String())
		}
		return fmt.Sprintf("want spans %v in trace %s, have %v", names, traceID, got)
	})
	return tree
}

func attrs(s tracetest.SpanStub) map[string]string {
	m := map[string]string{}
	for _, a := range s.Attributes {
		m[string(a.Key)] = a.Value.Emit()
	}
	return m
}

// parentName names the span's parent in the tree, "" for a root, "?" for
// a parent outside it.
func (tr spanTree) parentName(s tracetest.SpanStub) string {
	if !s.Parent.IsValid() {
		return ""
	}
	p, ok := tr.byID[s.Parent.SpanID()]
	if !ok {
		return "?"
	}
	return p.Name
}

func TestTraceOfConfirmedSaga(t *testing.T) {
	e, exp := tracedEnv(t, nil)
	e.start(t, "t1")
	st := e.await(t, "t1", saga.StatusCompleted)
	if len(st.TraceID) != 32 {
		t.Fatalf("Get's trace id = %q, want 32 hex digits", st.TraceID)
	}
	f := e.s.flow.Name()
	start, charge, reserve, invoice := f+" start", f+"/charge action", f+"/reserve action", f+"/invoice action"
	confirm, notify, end := f+"/confirm action", f+"/notify action", f+" end audit"
	tree := awaitSpans(t, exp, st.TraceID, start, charge, reserve, invoice, confirm, notify, end)
	if len(tree.byID) != 7 {
		t.Errorf("trace has %d spans, want 7: %v", len(tree.byID), keys(tree.byName))
	}
	want := map[string][]string{start: {""}, charge: {start}, reserve: {charge}, invoice: {charge},
		confirm: {reserve, invoice}, notify: {confirm}, end: {notify}}
	for name, parents := range want {
		s := tree.byName[name]
		if p := tree.parentName(s); !contains(parents, p) {
			t.Errorf("span %q has parent %q, want one of %q", name, p, parents)
		}
		if s.Status.Code == codes.Error {
			t.Errorf("span %q is marked an error in a saga that completed", name)
		}
	}
	a := attrs(tree.byName[charge])
	for k, v := range map[string]string{"choreo.flow": f, "choreo.version": "1", "choreo.saga_id": "t1", "choreo.step": "charge",
		"choreo.phase": "action", "choreo.attempt": "1", "choreo.outcome": "done"} {
		if a[k] != v {
			t.Errorf("charge span attribute %s = %q, want %q (all: %v)", k, a[k], v, a)
		}
	}
	if tree.byName[charge].SpanKind != trace.SpanKindConsumer || tree.byName[start].SpanKind != trace.SpanKindProducer {
		t.Errorf("span kinds: start %v, charge %v", tree.byName[start].SpanKind, tree.byName[charge].SpanKind)
	}
}

func TestTraceOfCompensatedSaga(t *testing.T) {
	// The saga ends with its compensations, and its end is the last span.
	e, exp := tracedEnv(t, nil)
	// The invoice fails only once the reservation is done, so that the
	// reservation is compensated too.
	e.l.on("t2", "invoice:action", func(ctx context.Context, _ int) error {
		sagatest.Poll(t, 20*time.Second, func() bool { return e.l.count("t2", "reserve", saga.PhaseAction) == 1 }, func() string { return "reserve never ran" })
		return saga.Abort(errors.New("no invoice today"))
	})
	e.start(t, "t2")
	st := e.await(t, "t2", saga.StatusCompensated)
	f := e.s.flow.Name()
	start, charge, reserve, invoice := f+" start", f+"/charge action", f+"/reserve action", f+"/invoice action"
	undoCharge, undoReserve, end := f+"/charge compensation", f+"/reserve compensation", f+" end audit"
	tree := awaitSpans(t, exp, st.TraceID, start, charge, reserve, invoice, undoCharge, undoReserve, end)
	if s := tree.byName[invoice]; s.Status.Code != codes.Error || !strings.Contains(s.Status.Description, "no invoice today") || attrs(s)["choreo.outcome"] != "failed" {
		t.Errorf("failed step's span: status %v %q, outcome %q; want an error with the reason, outcome failed", s.Status.Code, s.Status.Description, attrs(s)["choreo.outcome"])
	}
	for _, name := range []string{charge, reserve, undoCharge, undoReserve} {
		if s := tree.byName[name]; s.Status.Code == codes.Error {
			t.Errorf("span %q is marked an error: %q", name, s.Status.Description)
		}
	}
	for _, name := range []string{undoCharge, undoReserve} {
		s := tree.byName[name]
		if a := attrs(s); a["choreo.phase"] != "compensation" || a["choreo.outcome"] != "compensated" {
			t.Errorf("span %q: phase %q, outcome %q", name, a["choreo.phase"], a["choreo.outcome"])
		}
	}
	// Compensations run in reverse order: the failure makes the
	// reservation's due, whose end makes the charge's due.
	for name, want := range map[string]string{undoReserve: invoice, undoCharge: undoReserve, end: undoCharge} {
		if p := tree.parentName(tree.byName[name]); p != want {
			t.Errorf("span %q has parent %q, want %q", name, p, want)
		}
	}
	for name, s := range tree.byName {
		if p := tree.parentName(s); p == "?" || (p == "" && name != start) {
			t.Errorf("span %q is not connected to the saga's start (parent %q)", name, p)
		}
	}
}

func TestNoTraceContextWhenTracingIsOff(t *testing.T) {
	e := newEnv(t, 0, nil)
	e.start(t, "u1")
	st := e.await(t, "u1", saga.StatusCompleted)
	if st.TraceID != "" {
		t.Errorf("trace id %q without tracing", st.TraceID)
	}
	_, js := e.srv.Connect()
	s, err := js.Stream(context.Background(), access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), "choreo.log."+e.s.flow.Name()+".u1.>")
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Header.Get("traceparent"); v != "" {
		t.Errorf("log event carries traceparent %q without tracing", v)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
