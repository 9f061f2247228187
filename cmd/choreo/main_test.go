package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

type (
	Trip   struct{ Who string }
	Ticket struct{ Who string }
)

// system is a running flow with two versions: book -> hotel (v1) and
// book -> car -> hotel (v2); hotel is not served, so sagas wait there.
func system(t *testing.T) (url string, c *saga.Client, v1, v2 *saga.Flow[Trip], serveHotel func()) {
	t.Helper()
	srv := sagatest.NewServer(t)
	c = srv.Client()
	book := saga.NewStep[Trip, Ticket]("book", saga.Owner("airline"), saga.Undo("unbook"))
	car := saga.NewStep[Ticket, Ticket]("car", saga.Owner("rental"))
	hotel := saga.NewStep[Ticket, Ticket]("hotel", saga.Owner("hotel"))
	v1 = saga.MustDefine[Trip]("trip", 1, book, hotel, saga.StartedBy("agent"))
	v2 = saga.MustDefine[Trip]("trip", 2, book, car, hotel, saga.StartedBy("agent"))
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	pass := func(_ context.Context, in Ticket) (Ticket, error) { return in, nil }
	if err := saga.Handle(r, book, func(_ context.Context, in Trip) (Ticket, error) { return Ticket(in), nil }, nil); err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, car, pass, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	serveHotel = func() {
		r, err := saga.NewRunner(srv.Client())
		if err != nil {
			t.Fatal(err)
		}
		if err := saga.Handle(r, hotel, pass, nil); err != nil {
			t.Fatal(err)
		}
		sagatest.Run(t, r)
	}
	return srv.ClientURL(), c, v1, v2, serveHotel
}

// cli runs the command line and returns its exit status and output.
func runCLI(t *testing.T, url string, args ...string) (int, string, string) {
	t.Helper()
	var out, errw bytes.Buffer
	code := run(context.Background(), append([]string{"--server", url}, args...), &out, &errw)
	return code, out.String(), errw.String()
}

var times = regexp.MustCompile(`\d{4}-\d\d-\d\dT[0-9:.]+Z`)

// golden compares out with testdata/name, times masked.
func golden(t *testing.T, name, out string) {
	t.Helper()
	out = times.ReplaceAllString(out, "TIME")
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("%s: got\n%s\nwant\n%s", name, out, want)
	}
}

func TestFlowsAndVersions(t *testing.T) {
	url, c, v1, v2, serveHotel := system(t)
	ctx := context.Background()
	// One after the other, so that the log's sequences are always the same.
	for _, s := range []struct {
		id string
		f  *saga.Flow[Trip]
	}{{"old", v1}, {"new", v2}} {
		id := s.id
		if err := saga.Start(ctx, c, s.f, id, Trip{Who: id}); err != nil {
			t.Fatal(err)
		}
		sagatest.Poll(t, 20*time.Second, func() bool {
			st, err := c.Get(ctx, v1, id)
			return err == nil && st.Step("hotel").Status == saga.StepRunning
		}, func() string { return id + " does not reach hotel" })
	}

	code, out, errs := runCLI(t, url, "flows", "ls")
	if code != 0 {
		t.Fatalf("flows ls: %d %s", code, errs)
	}
	golden(t, "flows-ls.golden", out)

	code, out, errs = runCLI(t, url, "flows", "versions", "trip")
	if code != 0 {
		t.Fatalf("flows versions: %d %s", code, errs)
	}
	golden(t, "flows-versions.golden", out)

	code, out, _ = runCLI(t, url, "sagas", "show", "trip", "old")
	if code != 0 {
		t.Fatalf("sagas show: %d", code)
	}
	golden(t, "sagas-show.golden", out)

	code, out, _ = runCLI(t, url, "--json", "sagas", "ls", "--flow", "trip", "--version", "2")
	var list []saga.State
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].ID != "new" {
		t.Errorf("sagas ls --json --version 2: %d %s", code, out)
	}
	// Without --flow: every registered flow; --since by age or time.
	code, out, _ = runCLI(t, url, "sagas", "ls", "--since", "1h")
	if code != 0 || !strings.Contains(out, "FLOW") || !regexp.MustCompile(`trip\s+old\s+v1`).MatchString(out) || !regexp.MustCompile(`trip\s+new\s+v2`).MatchString(out) {
		t.Errorf("sagas ls --since 1h: %d\n%s", code, out)
	}
	if code, out, _ = runCLI(t, url, "--json", "sagas", "ls", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); code != 0 || strings.TrimSpace(out) != "null" && strings.TrimSpace(out) != "[]" {
		t.Errorf("sagas ls --since an hour from now: %d %s", code, out)
	}

	code, out, errs = runCLI(t, url, "flows", "retire", "trip", "1", "--drain", "--reason", "v2 rents cars")
	if code != 0 {
		t.Fatalf("flows retire: %d %s", code, errs)
	}
	golden(t, "flows-retire.golden", out)
	// The retirement was made in this process: its starters refuse at once.
	if err := saga.Start(ctx, c, v1, "late", Trip{}); !errorsIsRetired(err) {
		t.Errorf("start right after retire: %v", err)
	}

	code, out, _ = runCLI(t, url, "sagas", "cancel", "trip", "old", "--reason", "customer called")
	if code != 0 || !strings.Contains(out, "cancelled") {
		t.Errorf("sagas cancel: %d %s", code, out)
	}
	// A step nobody serves holds the compensation until a runner of its
	// version takes its trigger (and skips it: the saga compensates).
	serveHotel()
	st := sagatest.AwaitStatus(t, c, v1, "old", 20*time.Second, saga.StatusCompensated)
	if st.Reason != "cancelled: customer called" {
		t.Errorf("cancelled saga's reason %q", st.Reason)
	}
	code, _, errs = runCLI(t, url, "sagas", "cancel", "trip", "old", "--reason", "again")
	if code != 1 || !strings.Contains(errs, "not running") {
		t.Errorf("cancel of an ended saga: %d %q", code, errs)
	}
	code, out, _ = runCLI(t, url, "flows", "reinstate", "trip", "v1")
	if code != 0 || !strings.Contains(out, "active again") {
		t.Errorf("reinstate: %d %s", code, out)
	}
}

func errorsIsRetired(err error) bool {
	return err != nil && strings.Contains(err.Error(), saga.ErrRetired.Error())
}

func TestBadCommandLines(t *testing.T) {
	url, _, _, _, _ := system(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"flows"}, 2, "usage"},
		{[]string{"flows", "rm"}, 2, `unknown command "flows" "rm"`},
		{[]string{"flows", "retire", "trip", "1", "--reason", "x"}, 2, "give --drain"},
		{[]string{"flows", "retire", "trip", "1", "--drain"}, 2, "give --reason"},
		{[]string{"flows", "retire", "trip", "one", "--drain", "--reason", "x"}, 2, `version "one"`},
		{[]string{"sagas", "ls", "--since", "yesterday"}, 2, `--since "yesterday": want a time`},
		{[]string{"doctor", "--idle", "0s"}, 2, "must be above zero"},
		{[]string{"doctor", "extra"}, 2, "want only flags"},
		{[]string{"sagas", "ls", "--flow", "trip", "--status", "lost"}, 2, `--status "lost"`},
		{[]string{"sagas", "show", "trip"}, 2, "want FLOW ID"},
		{[]string{"sagas", "show", "trip", "nope"}, 1, "not found"},
		{[]string{"--creds", "/nonexistent", "flows", "ls"}, 2, "--creds"},
	} {
		code, _, errs := runCLI(t, url, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, %q; want %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
	// A server nobody answers at: one line, status 1.
	code, _, errs := runCLI(t, "nats://127.0.0.1:1", "flows", "ls")
	if code != 1 || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "cannot reach") {
		t.Errorf("unreachable server: %d %q", code, errs)
	}
}

// A server without choreo's streams: Open changes nothing and says so.
func TestUnprovisionedServer(t *testing.T) {
	srv := sagatest.NewServer(t)
	code, _, errs := runCLI(t, srv.ClientURL(), "flows", "ls")
	if code != 1 || !strings.Contains(errs, "provisioned") {
		t.Errorf("unprovisioned: %d %q", code, errs)
	}
	_, js := srv.Connect()
	names := js.StreamNames(context.Background())
	for n := range names.Name() {
		t.Errorf("the command line created stream %s", n)
	}
}

func TestDiagramDoctorDeadLettersWatch(t *testing.T) {
	url, c, v1, v2, serveHotel := system(t)
	ctx := context.Background()

	code, out, errs := runCLI(t, url, "flows", "diagram", "trip")
	if code != 0 {
		t.Fatalf("flows diagram: %d %s", code, errs)
	}
	golden(t, "flows-diagram-v2.golden", out)
	if code, out, _ = runCLI(t, url, "flows", "diagram", "trip", "1"); code != 0 || !strings.Contains(out, "trip v1") || strings.Contains(out, "car") {
		t.Errorf("diagram of v1: %d\n%s", code, out)
	}

	// A watch sees the saga move.
	wctx, stopWatch := context.WithCancel(ctx)
	var wout, werr shoptest.LogBuffer
	watched := make(chan int, 1)
	go func() {
		watched <- run(wctx, []string{"--server", url, "sagas", "watch"}, &wout, &werr) // every flow

	}()
	n := 0
	sagatest.Poll(t, 20*time.Second, func() bool {
		n++
		if err := saga.Start(ctx, c, v2, "w"+strconv.Itoa(n), Trip{Who: "w"}); err != nil {
			t.Fatal(err)
		}
		return regexp.MustCompile(` trip w\d+ v2 running`).MatchString(wout.String())
	}, func() string { return "watch printed: " + wout.String() + werr.String() })
	stopWatch()
	if code := <-watched; code != 0 {
		t.Errorf("watch ended with %d: %s", code, werr.String())
	}

	// hotel has no runner: doctor says so, exit 3.
	sagatest.Poll(t, 20*time.Second, func() bool {
		st, err := c.Get(ctx, v2, "w1")
		return err == nil && st.Step("hotel").Status == saga.StepRunning
	}, func() string { return "w1 does not reach hotel" })
	// (Reported once a saga has waited there for --idle.)
	sagatest.Poll(t, 20*time.Second, func() bool {
		code, out, _ = runCLI(t, url, "doctor", "--idle", "1s")
		return code == 3
	}, func() string { return fmt.Sprintf("doctor: %d\n%s", code, out) })
	if !strings.Contains(out, "[unserved]") || !strings.Contains(out, "step hotel, the oldest for") || !strings.Contains(out, "trip v2") {
		t.Errorf("doctor: %d\n%s", code, out)
	}
	serveHotel()
	sagatest.AwaitStatus(t, c, v2, "w1", 20*time.Second, saga.StatusCompleted)
	sagatest.Poll(t, 20*time.Second, func() bool {
		code, _, _ := runCLI(t, url, "doctor")
		return code == 0
	}, func() string { _, out, _ := runCLI(t, url, "doctor"); return out })

	// Garbage on a saga subject is dead-lettered with its reason.
	sagatest.PublishRaw(t, url, "choreo.log.trip.junk.v1._saga.start", "NATS/1.0\r\n\r\n", "not json")
	var seq string
	sagatest.Poll(t, 20*time.Second, func() bool {
		code, out, _ := runCLI(t, url, "--json", "dlq", "ls", "--flow", "trip")
		var rows []struct {
			Sequence uint64
			Subject  string
			Reason   string
		}
		if code != 0 || json.Unmarshal([]byte(out), &rows) != nil {
			return false
		}
		for _, r := range rows {
			if r.Subject == "choreo.log.trip.junk.v1._saga.start" {
				seq = strconv.FormatUint(r.Sequence, 10)
				return strings.Contains(r.Reason, "missing headers")
			}
		}
		return false
	}, func() string { _, out, _ := runCLI(t, url, "dlq", "ls"); return out })
	code, out, _ = runCLI(t, url, "dlq", "show", seq)
	if code != 0 || !strings.Contains(out, "not json") || !strings.Contains(out, "missing headers") {
		t.Errorf("dlq show: %d\n%s", code, out)
	}
	// Only the newest --last are listed, and the rest are counted.
	sagatest.PublishRaw(t, url, "choreo.log.trip.junk2.v1._saga.start", "NATS/1.0\r\n\r\n", "not json either")
	sagatest.Poll(t, 20*time.Second, func() bool {
		code, out, errs := runCLI(t, url, "dlq", "ls", "--last", "1")
		return code == 0 && strings.Contains(out, "junk2") && !strings.Contains(out, "trip.junk.") &&
			strings.Contains(errs, "the newest 1 of 2 dead letters")
	}, func() string { _, out, errs := runCLI(t, url, "dlq", "ls", "--last", "1"); return out + errs })
	if code, _, errs = runCLI(t, url, "dlq", "show", "999999"); code != 1 || !strings.Contains(errs, "no dead letter") {
		t.Errorf("dlq show of nothing: %d %s", code, errs)
	}
	if code, _, errs = runCLI(t, url, "dlq", "replay", seq); code != 1 || !strings.Contains(errs, "never stands") {
		t.Errorf("replay of a log event: %d %s", code, errs)
	}
	if code, out, _ = runCLI(t, url, "dlq", "purge", "--before", "1h"); code != 0 || !strings.Contains(out, "No dead letter is that old") {
		t.Errorf("purge of nothing that old: %d %s", code, out)
	}
	future := time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	stdin = strings.NewReader("no\n")
	if code, _, errs = runCLI(t, url, "dlq", "purge", "--before", future); code != 1 || !strings.Contains(errs, "not purged") {
		t.Errorf("purge answered no: %d %s", code, errs)
	}
	stdin = strings.NewReader("yes\n")
	if code, out, errs = runCLI(t, url, "dlq", "purge", "--before", future); code != 0 || !strings.Contains(out, "Purged 2 dead letters") {
		t.Errorf("purge answered yes: %d %s %s", code, out, errs)
	}
	if code, out, _ = runCLI(t, url, "--json", "dlq", "ls"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("after the purge: %d %s", code, out)
	}
	_ = v1
}

// flows asyncapi writes the registered flows as an AsyncAPI 3.0 document
// (sagatest.ValidAsyncAPI).
func TestFlowsAsyncAPI(t *testing.T) {
	url, _, _, _, _ := system(t)
	code, out, errs := runCLI(t, url, "flows", "asyncapi", "trip", "--host", "nats.example:4222")
	if code != 0 {
		t.Fatalf("flows asyncapi: %d %s", code, errs)
	}
	golden(t, "flows-asyncapi.golden", out)
	if err := sagatest.ValidAsyncAPI([]byte(out)); err != nil {
		t.Fatalf("not an AsyncAPI 3.0.0 document: %v", err)
	}
	if !strings.Contains(out, `"address": "choreo.log.trip.{sagaId}.v2.car.done"`) {
		t.Error("no channel for v2's car step")
	}

	// Every version by default; one version; and the errors.
	if code, out, _ := runCLI(t, url, "flows", "asyncapi"); code != 0 || !strings.Contains(out, "trip_v1_hotel_done") || !strings.Contains(out, "trip_v2_car_done") {
		t.Errorf("flows asyncapi: %d, both versions not there", code)
	}
	if code, out, _ := runCLI(t, url, "flows", "asyncapi", "trip", "1"); code != 0 || strings.Contains(out, "trip_v2") {
		t.Errorf("flows asyncapi trip 1: %d, or v2 in it", code)
	}
	if code, _, errs := runCLI(t, url, "flows", "asyncapi", "nope"); code != 1 || !strings.Contains(errs, "flow nope: no runner registered") {
		t.Errorf("an unknown flow: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, url, "flows", "asyncapi", "trip", "x"); code != 2 || !strings.Contains(errs, `version "x"`) {
		t.Errorf("a bad version: %d %q", code, errs)
	}
}

// sagas show prints the saga's trace id when it was started with tracing.
func TestSagasShowPrintsTheTrace(t *testing.T) {
	srv := sagatest.NewServer(t)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	c := srv.Client(saga.WithTracerProvider(tp))
	step := saga.NewStep[Trip, Ticket]("only", saga.Owner("desk"))
	flow := saga.MustDefine[Trip]("traced", 1, step)
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, step, func(_ context.Context, in Trip) (Ticket, error) { return Ticket(in), nil }, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), c, flow, "t1", Trip{Who: "x"}); err != nil {
		t.Fatal(err)
	}
	st := sagatest.AwaitStatus(t, c, flow, "t1", 20*time.Second, saga.StatusCompleted)
	if len(st.TraceID) != 32 {
		t.Fatalf("trace id %q", st.TraceID)
	}
	code, out, errs := runCLI(t, srv.ClientURL(), "sagas", "show", "traced", "t1")
	if code != 0 || !strings.Contains(out, "trace: "+st.TraceID) {
		t.Errorf("sagas show: %d %s\n%s", code, errs, out)
	}
}

// --json may follow the command; doctor's JSON is a list even when empty;
// refused credentials say so, not "cannot reach".
func TestJSONAfterTheCommandAndRefusedCredentials(t *testing.T) {
	url, _, _, _, _ := system(t)
	code, out, errs := runCLI(t, url, "flows", "ls", "--json")
	var flows []describe.Flow
	if code != 0 || json.Unmarshal([]byte(out), &flows) != nil || len(flows) != 2 {
		t.Errorf("flows ls --json: %d %s %s", code, errs, out)
	}

	locked := sagatest.NewServer(t, func(o *server.Options) { o.Username, o.Password = "ops", "secret" })
	code, _, errs = runCLI(t, locked.ClientURL(), "flows", "ls")
	if code != 1 || !strings.Contains(errs, "refused these credentials") || strings.Contains(errs, "cannot reach") {
		t.Errorf("no credentials: %d %q", code, errs)
	}
	// With them, it gets as far as the (empty) server.
	code, _, errs = runCLI(t, locked.ClientURL(), "--user", "ops", "--password", "secret", "flows", "ls")
	if code != 1 || strings.Contains(errs, "refused these credentials") || !strings.Contains(errs, "provisioned") {
		t.Errorf("with credentials: %d %q", code, errs)
	}
	// Nothing wrong: doctor's JSON is an empty list.
	if code, out, errs = runCLI(t, url, "doctor", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("doctor --json: %d %q %s", code, out, errs)
	}
}

// sagas watch says why a saga compensates (issue 20).
func TestWatchLineSaysTheReason(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		st      saga.State
		running []string
		want    string
	}{
		{saga.State{Flow: "trip", ID: "t1", Version: 1, Status: saga.StatusRunning, UpdatedAt: at}, []string{"hotel:running"},
			"2026-12-06T10:00:00Z trip t1 v1 running hotel:running"},
		{saga.State{Flow: "trip", ID: "t2", Version: 2, Status: saga.StatusCompensated, Reason: "step hotel: no room", UpdatedAt: at}, nil,
			"2026-12-06T10:00:00Z trip t2 v2 compensated reason: step hotel: no room"},
		{saga.State{Flow: "trip", ID: "t3", Version: 2, Status: saga.StatusCompensating, Reason: "cancelled: customer called", UpdatedAt: at}, []string{"book:compensating"},
			"2026-12-06T10:00:00Z trip t3 v2 compensating book:compensating reason: cancelled: customer called"},
	} {
		if got := watchLine(&tc.st, tc.running); got != tc.want {
			t.Errorf("watch line %q, want %q", got, tc.want)
		}
	}
}

// TestSagasShowChild: a child saga shows the saga and step it is the
// child of.
func TestSagasShowChild(t *testing.T) {
	srv := sagatest.NewServer(t)
	c := srv.Client()
	pick := saga.NewStep[Trip, Ticket]("pick", saga.Owner("warehouse"))
	packing := saga.MustDefine[Trip]("packing", 1, pick)
	pack := saga.NewChild("pack", packing, saga.Owner("orders"))
	order := saga.MustDefine[Trip]("order", 1, pack)
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, pick, func(_ context.Context, in Trip) (Ticket, error) { return Ticket(in), nil }, nil); err != nil {
		t.Fatal(err)
	}
	if err := saga.HandleChild(r, pack); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	ctx := context.Background()
	if err := saga.Start(ctx, c, order, "o1", Trip{Who: "ann"}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, c, order, "o1", 20*time.Second, saga.StatusCompleted)
	code, out, errs := runCLI(t, srv.ClientURL(), "sagas", "show", "packing", saga.ChildID("o1", "pack"))
	if code != 0 {
		t.Fatalf("sagas show: %d %s", code, errs)
	}
	// The child's events and its parent's interleave: sequences vary.
	golden(t, "sagas-show-child.golden", regexp.MustCompile(`(?m)^\d+ `).ReplaceAllString(out, "N "))
}
