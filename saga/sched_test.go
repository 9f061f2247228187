package saga_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

type schedOrder struct{ Seats int }

// schedFlow is hold (compensatable) then confirm, with a deadline, and a
// count of the calls of each handler per saga.
type schedFlow struct {
	flow          *saga.Flow[schedOrder]
	hold, confirm *saga.Step[schedOrder, schedOrder]
	mu            sync.Mutex
	calls         map[string]int // "id/step:phase"
}

var schedFlows = map[string]*saga.Flow[schedOrder]{}

func newSchedFlow(name string) *schedFlow {
	f := &schedFlow{calls: map[string]int{}}
	f.hold = saga.NewStep[schedOrder, schedOrder]("hold", saga.Owner("seats"), saga.Undo("release"))
	f.confirm = saga.NewStep[schedOrder, schedOrder]("confirm", saga.Owner("seats"))
	f.flow = saga.MustDefine[schedOrder](name, 1, f.hold, f.confirm, saga.Deadline(time.Minute), saga.StartedBy("desk"))
	return f
}

func (f *schedFlow) note(ctx context.Context, what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, _ := saga.InfoFrom(ctx)
	f.calls[info.ID+"/"+what]++
}

func (f *schedFlow) count(id, what string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id+"/"+what]
}

// run serves the flow on a client of its own until the test ends.
func (f *schedFlow) run(t *testing.T, srv *sagatest.Server) {
	t.Helper()
	r, err := saga.NewRunner(srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	pass := func(what string) func(context.Context, schedOrder) (schedOrder, error) {
		return func(ctx context.Context, in schedOrder) (schedOrder, error) { f.note(ctx, what); return in, nil }
	}
	if err := saga.Handle(r, f.hold, pass("hold:action"), func(ctx context.Context, _, _ schedOrder) error {
		f.note(ctx, "hold:compensation")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, f.confirm, pass("confirm:action"), nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
}

// A saga started After a duration is recorded at once as scheduled, runs
// nothing, and begins then from the broker's schedule alone: the process
// that started it is gone, and no runner was alive when the schedule was
// set nor when it fired. A runner started later finds the fired timer,
// begins the saga, and the deadline counts from the begin.
func TestSchedAfterBeginsWithNoProcessAlive(t *testing.T) {
	srv := sagatest.NewServer(t)
	f := newSchedFlow("schedtrip")
	ctx := context.Background()

	nc, js := srv.Connect()
	starter, err := saga.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := saga.Start(ctx, starter, f.flow, "s-1", schedOrder{Seats: 2}, saga.After(1500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	// Starting it again is harmless, later or at once: the saga stands,
	// and so does its begin (a start at once sets a deadline timer first,
	// which replaces the saga's one schedule: the begin is set again).
	if err := saga.Start(ctx, starter, f.flow, "s-1", schedOrder{Seats: 2}, saga.After(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := saga.Start(ctx, starter, f.flow, "s-1", schedOrder{Seats: 3}); err != nil {
		t.Fatal(err)
	}
	reader := srv.Client()
	list, err := reader.List(ctx, f.flow, saga.StatusScheduled)
	if err != nil || len(list) != 1 || list[0].ID != "s-1" {
		t.Fatalf("scheduled sagas: %v %v", list, err)
	}
	st := list[0]
	if !st.Scheduled.After(before.Add(time.Second)) || st.Scheduled.After(time.Now().Add(1500*time.Millisecond)) || !st.Deadline.IsZero() {
		t.Errorf("scheduled saga: begins %v, deadline %v (started %v)", st.Scheduled, st.Deadline, before)
	}
	for _, s := range st.Steps {
		if s.Status != saga.StepPending {
			t.Errorf("step %s of a scheduled saga is %s", s.Name, s.Status)
		}
	}
	if running, _ := reader.List(ctx, f.flow, saga.StatusRunning); len(running) != 0 {
		t.Errorf("a scheduled saga is listed running: %v", running)
	}
	nc.Close() // the starter is gone

	// Past its time with no runner: the schedule fired into the timer
	// stream, the saga waits for a runner of its flow.
	sagatest.Poll(t, 10*time.Second, func() bool { return time.Now().After(st.Scheduled.Add(500 * time.Millisecond)) },
		func() string { return "the clock stopped" })
	if got, err := reader.Get(ctx, f.flow, "s-1"); err != nil || got.Status != saga.StatusScheduled {
		t.Fatalf("with no runner: %v %v", got, err)
	}
	f.run(t, srv)
	done := sagatest.AwaitStatus(t, reader, f.flow, "s-1", 20*time.Second, saga.StatusCompleted)
	sagatest.AssertTimeline(t, reader, f.flow, "s-1", "_saga:start", "_saga:begin", "hold:done", "confirm:done")
	tl, err := reader.Timeline(ctx, f.flow, "s-1")
	if err != nil {
		t.Fatal(err)
	}
	begin := tl[1].Time
	if begin.Before(st.Scheduled) || !done.Deadline.Equal(done.Deadline.Truncate(time.Microsecond)) ||
		done.Deadline.Before(begin.Add(time.Minute-time.Second)) || done.Deadline.After(begin.Add(time.Minute)) {
		t.Errorf("begun at %v (scheduled %v), deadline %v: want a minute after the begin", begin, st.Scheduled, done.Deadline)
	}
	if !done.Scheduled.Equal(st.Scheduled) || !done.StartedAt.Equal(st.StartedAt) {
		t.Errorf("the begun saga: scheduled %v started %v, want %v %v", done.Scheduled, done.StartedAt, st.Scheduled, st.StartedAt)
	}
	if n := f.count("s-1", "hold:action"); n != 1 {
		t.Errorf("hold ran %d times", n)
	}
}

// A time not after now starts the saga at once.
func TestSchedAtInThePastStartsAtOnce(t *testing.T) {
	srv := sagatest.NewServer(t)
	f := newSchedFlow("schedpast")
	f.run(t, srv)
	c := srv.Client()
	if err := saga.Start(context.Background(), c, f.flow, "p-1", schedOrder{}, saga.At(time.Now().Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	st := sagatest.AwaitStatus(t, c, f.flow, "p-1", 20*time.Second, saga.StatusCompleted)
	if !st.Scheduled.IsZero() {
		t.Errorf("a saga started at once has a scheduled time %v", st.Scheduled)
	}
	sagatest.AssertTimeline(t, c, f.flow, "p-1", "_saga:start", "hold:done", "confirm:done")
}

// Cancelled before it begins, a scheduled saga ends compensated with the
// reason and nothing run; its time passing later changes nothing.
func TestSchedCancelBeforeBegin(t *testing.T) {
	srv := sagatest.NewServer(t)
	f := newSchedFlow("schedcancel")
	f.run(t, srv)
	c := srv.Client()
	op := srv.Ops()
	ctx := context.Background()
	if err := saga.Start(ctx, c, f.flow, "c-1", schedOrder{}, saga.After(1500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	st, err := c.Get(ctx, f.flow, "c-1")
	if err != nil || st.Status != saga.StatusScheduled {
		t.Fatalf("before the cancel: %v %v", st, err)
	}
	if err := op.Cancel(ctx, f.flow.Name(), "c-1", "plans changed"); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, f.flow, "c-1")
	if err != nil || got.Status != saga.StatusCompensated || got.Reason != "cancelled: plans changed" || got.EndedAt.IsZero() {
		t.Fatalf("cancelled: %+v %v", got, err)
	}
	if err := op.Cancel(ctx, f.flow.Name(), "c-1", "again"); !errors.Is(err, ops.ErrNotRunning) {
		t.Errorf("a second cancel: %v", err)
	}
	// Past its time, and a little more for a runner to act on a timer.
	sagatest.Poll(t, 10*time.Second, func() bool { return time.Now().After(st.Scheduled.Add(2 * time.Second)) },
		func() string { return "the clock stopped" })
	sagatest.AssertTimeline(t, c, f.flow, "c-1", "_saga:start", "_saga:cancelled")
	for _, what := range []string{"hold:action", "hold:compensation", "confirm:action"} {
		if n := f.count("c-1", what); n != 0 {
			t.Errorf("%s ran %d times on a cancelled scheduled saga", what, n)
		}
	}
	if got, err := c.Get(ctx, f.flow, "c-1"); err != nil || got.Status != saga.StatusCompensated {
		t.Errorf("after its time: %v %v", got, err)
	}
}

// A participant may append a scheduled saga's begin (the runners of the
// flow do, when its schedule fires), but not before its time: a begin
// appended an hour early is refused as forged, nothing runs, and the saga
// stays scheduled. A scheduled start that triggers a step is refused too.
func TestSchedForgedEarlyBeginIsRefused(t *testing.T) {
	srv := sagatest.NewServer(t)
	f := newSchedFlow("schedforge")
	f.run(t, srv)
	c := srv.Client()
	op := srv.Ops()
	ctx := context.Background()
	if err := saga.Start(ctx, c, f.flow, "f-1", schedOrder{}, saga.After(time.Hour)); err != nil {
		t.Fatal(err)
	}
	nc, js := srv.Connect()
	name := f.flow.Name()
	stream, err := js.Stream(ctx, access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	start, err := stream.GetLastMsgForSubject(ctx, wire.LogWildcard(name, "f-1"))
	if err != nil {
		t.Fatal(err)
	}
	// The honest begin's state, an hour early: running, two events, the
	// start's sequence listed, hold triggered by event 2 a microsecond in.
	raw := start.Header.Get(wire.State)
	fields := strings.Split(raw, "|")
	if len(fields) != 14 || fields[2] != "s" || fields[11] != "hold,,cp;confirm,1,cp" {
		t.Fatalf("the scheduled start's state is %q", raw)
	}
	fields[2], fields[3], fields[6] = "r", "2", "1"
	fields[10] = strconv.FormatUint(start.Sequence, 36)
	fields[11] = "hold,,cr,,2,,,1;confirm,1,cp"
	forged := appendForged(t, js, name, "f-1", wire.SagaStep, wire.PhaseBegin, strings.Join(fields, "|"))

	var dead []ops.DeadLetter
	sagatest.Poll(t, 20*time.Second, func() bool {
		dead, err = op.DeadLetters(ctx, name)
		for _, d := range dead {
			if d.Subject == wire.LogSubject(name, "f-1", 1, wire.SagaStep, wire.PhaseBegin) && strings.Contains(d.Reason, "not yet") {
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("the early begin (event %d) is not dead-lettered as early: %v %v", forged, reasons(dead), err)
	})
	st, err := c.Get(ctx, f.flow, "f-1")
	if err != nil || st.Status != saga.StatusScheduled {
		t.Fatalf("after a forged begin: %v %v", st, err)
	}
	if n := f.count("f-1", "hold:action"); n != 0 {
		t.Errorf("hold ran %d times on a forged begin", n)
	}

	// A scheduled start whose first step is triggered already.
	fields = strings.Split(raw, "|")
	fields[11] = "hold,,cr,,1,,,0;confirm,1,cp"
	m := nats.NewMsg(wire.LogSubject(name, "f-2", 1, wire.SagaStep, wire.PhaseStart))
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, wire.LogWildcard(name, "f-2"))
	m.Header.Set(wire.State, strings.Join(fields, "|"))
	m.Data = start.Data
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 20*time.Second, func() bool {
		_, err := srv.Client().Get(ctx, f.flow, "f-2")
		return errors.Is(err, saga.ErrNotFound)
	}, func() string { return "the forged scheduled start still stands" })
	if n := f.count("f-2", "hold:action"); n != 0 {
		t.Errorf("hold ran %d times on a forged start", n)
	}
}

// A scheduled saga that no runner began well past its time is a finding:
// its flow's timers are not handled.
func TestSchedOverdueIsDiagnosed(t *testing.T) {
	srv := sagatest.NewServer(t)
	f := newSchedFlow("schedlate")
	r, err := saga.NewRunner(srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, f.hold, func(_ context.Context, in schedOrder) (schedOrder, error) { return in, nil }, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)() // registers the flow, then stops
	c := srv.Client()
	ctx := context.Background()
	if err := saga.Start(ctx, c, f.flow, "l-1", schedOrder{}, saga.After(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	op := srv.Ops()
	var found []ops.Finding
	sagatest.Poll(t, 10*time.Second, func() bool {
		found, err = op.Diagnose(ctx, ops.DiagnoseOptions{Overdue: 300 * time.Millisecond})
		for _, x := range found {
			if x.Kind == "overdue" && strings.Contains(x.What, "l-1") && strings.Contains(x.What, "was to begin") {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("no overdue finding: %+v %v", found, err) })
}

// Retiring a version with CompensateInFlight stops its scheduled sagas
// too: they end compensated with the reason, nothing run.
func TestSchedCancelledByRetire(t *testing.T) {
	srv := sagatest.NewServer(t)
	f := newSchedFlow("schedretire")
	f.run(t, srv)
	c := srv.Client()
	ctx := context.Background()
	if err := saga.Start(ctx, c, f.flow, "r-1", schedOrder{}, saga.After(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rep, err := srv.Ops().Retire(ctx, f.flow.Name(), 1, ops.CompensateInFlight, "seats sold elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	st := sagatest.AwaitStatus(t, c, f.flow, "r-1", 20*time.Second, saga.StatusCompensated)
	if !strings.Contains(st.Reason, "seats sold elsewhere") || len(rep.Forward) != 0 {
		t.Errorf("retired: %+v, reason %q", rep, st.Reason)
	}
	if n := f.count("r-1", "hold:action"); n != 0 {
		t.Errorf("hold ran %d times", n)
	}
}
