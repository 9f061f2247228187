package saga_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// A journey whose hotel confirms later: book the flight, ask the hotel, wait
// for its confirmation (days), then pay (the pivot).
type (
	Journey      struct{ ID string }
	FlightTicket struct{ Ticket string }
	HotelBooked  struct{ Confirmation string }
	Paid         struct{ Receipt string }
)

type journey struct {
	flow   *saga.Flow[Journey]
	flight *saga.Step[Journey, FlightTicket]
	hotel  *saga.Step[FlightTicket, HotelBooked]
	pay    *saga.Step[HotelBooked, Paid]

	mu        sync.Mutex
	tokens    map[string]string // journey id -> the hotel's completion token
	asked     atomic.Int32      // hotel requests made
	cancelled atomic.Int32      // flights and hotels undone
}

func newJourney(t *testing.T, hotelOpts ...saga.StepOption) *journey {
	t.Helper()
	tr := &journey{tokens: map[string]string{}}
	tr.flight = saga.NewStep[Journey, FlightTicket]("flight")
	tr.hotel = saga.NewStep[FlightTicket, HotelBooked]("hotel", append([]saga.StepOption{saga.WaitsFor("hotel", 72*time.Hour)}, hotelOpts...)...)
	tr.pay = saga.NewStep[HotelBooked, Paid]("pay", saga.Pivot())
	flowSeq.Lock()
	flowSeq.n++
	name := fmt.Sprintf("journey%d", flowSeq.n)
	flowSeq.Unlock()
	tr.flow = saga.MustDefine[Journey](name, 1, tr.flight, tr.hotel, tr.pay)
	return tr
}

func (tr *journey) run(t *testing.T, c *saga.Client) (stop func()) {
	t.Helper()
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	must(t, saga.Handle(r, tr.flight, func(ctx context.Context, in Journey) (FlightTicket, error) {
		return FlightTicket{Ticket: "T-" + in.ID}, nil
	}, func(context.Context, Journey, FlightTicket) error { tr.cancelled.Add(1); return nil }))
	must(t, saga.Handle(r, tr.hotel, func(ctx context.Context, in FlightTicket) (HotelBooked, error) {
		tr.asked.Add(1)
		info, _ := saga.InfoFrom(ctx)
		tr.mu.Lock()
		tr.tokens[info.ID] = saga.CompletionToken(ctx)
		tr.mu.Unlock()
		return saga.Later[HotelBooked]()
	}, func(context.Context, FlightTicket, HotelBooked) error { tr.cancelled.Add(1); return nil }))
	must(t, saga.Handle(r, tr.pay, func(ctx context.Context, in HotelBooked) (Paid, error) {
		return Paid{Receipt: "R-" + in.Confirmation}, nil
	}, nil))
	return sagatest.Run(t, r)
}

func (tr *journey) token(id string) string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.tokens[id]
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// awaitStep polls until the saga's step has the status.
func awaitStep(t *testing.T, c *saga.Client, f saga.FlowRef, id, step string, want saga.StepStatus) *saga.State {
	t.Helper()
	var st *saga.State
	sagatest.Poll(t, 30*time.Second, func() bool {
		var err error
		st, err = c.Get(context.Background(), f, id)
		return err == nil && st.Step(step).Status == want
	}, func() string { return "step " + step + " never became " + string(want) + ": " + stepsOf(st) })
	return st
}

func stepsOf(st *saga.State) string {
	if st == nil {
		return "no state"
	}
	out := string(st.Status)
	for _, s := range st.Steps {
		out += " " + s.Name + ":" + string(s.Status)
	}
	return out
}

// TestCompletedLater: a step waits, another process (client) completes it
// after the runner restarted, and the saga goes on; a second completion,
// a stale token and a malformed one are refused and change nothing.
func TestCompletedLater(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newJourney(t)
	c := srv.Client()
	stop := tr.run(t, c)
	ctx := context.Background()
	must(t, saga.Start(ctx, c, tr.flow, "t1", Journey{ID: "t1"}))
	st := awaitStep(t, c, tr.flow, "t1", "hotel", saga.StepWaiting)
	h := st.Step("hotel")
	if h.WaitingOn != "hotel" || h.Token != tr.token("t1") || h.Token == "" {
		t.Fatalf("waiting step shows on=%q token=%q, handler got %q", h.WaitingOn, h.Token, tr.token("t1"))
	}
	if d := time.Until(h.WaitUntil); d < 71*time.Hour || d > 73*time.Hour {
		t.Fatalf("wait until %v, want about 72h from now", h.WaitUntil)
	}
	stop() // every runner gone: the completion comes from elsewhere

	other := srv.Client()
	must(t, tr.hotel.Complete(ctx, other, h.Token, HotelBooked{Confirmation: "H1"}))
	if err := tr.hotel.Complete(ctx, other, h.Token, HotelBooked{Confirmation: "H2"}); !errors.Is(err, saga.ErrNotWaiting) {
		t.Fatalf("second completion: %v, want ErrNotWaiting", err)
	}
	if err := tr.hotel.Complete(ctx, other, "nonsense", HotelBooked{}); !errors.Is(err, saga.ErrInvalidToken) {
		t.Fatalf("malformed token: %v, want ErrInvalidToken", err)
	}
	if err := tr.pay.Complete(ctx, other, h.Token, Paid{}); !errors.Is(err, saga.ErrInvalidToken) {
		t.Fatalf("another step's completion with the hotel's token: %v, want ErrInvalidToken", err)
	}
	tr.run(t, srv.Client()) // a new runner carries the saga on
	st = sagatest.AwaitStatus(t, c, tr.flow, "t1", 30*time.Second, saga.StatusCompleted)
	if got := st.Step("hotel"); got.Token != "" || got.Status != saga.StepCompleted {
		t.Fatalf("hotel after completion: %+v", got)
	}
	sagatest.AssertTimeline(t, c, tr.flow, "t1",
		"_saga:start", "flight:done", "hotel:waiting", "hotel:done", "pay:done")
}

// TestWaitTimesOut: a three-day wait times out in milliseconds of test
// time; the step is asked again while its retries last, then compensated;
// a completion after that is reported as late.
func TestWaitTimesOut(t *testing.T) {
	srv := sagatest.NewServer(t)
	clk := srv.Clock()
	tr := newJourney(t, saga.WithRetry(saga.RetryPolicy{MaxAttempts: 2}))
	c := srv.Client()
	tr.run(t, c)
	ctx := context.Background()
	must(t, saga.Start(ctx, c, tr.flow, "t2", Journey{ID: "t2"}))
	first := awaitStep(t, c, tr.flow, "t2", "hotel", saga.StepWaiting).Step("hotel").Token
	clk.Advance(t, 71*time.Hour)
	if st, _ := c.Get(ctx, tr.flow, "t2"); st.Step("hotel").Status != saga.StepWaiting {
		t.Fatalf("before its timeout: %s", stepsOf(st))
	}
	if clk.Advance(t, 2*time.Hour) == 0 {
		t.Fatal("no schedule fired after 73 hours")
	}
	var second string
	sagatest.Poll(t, 30*time.Second, func() bool {
		st, err := c.Get(ctx, tr.flow, "t2")
		if err != nil {
			return false
		}
		h := st.Step("hotel")
		second = h.Token
		return h.Status == saga.StepWaiting && h.Attempts == 2
	}, func() string { return "the hotel was not asked again" })
	if tr.asked.Load() != 2 || second == first {
		t.Fatalf("asked %d times, tokens %q then %q", tr.asked.Load(), first, second)
	}
	if err := tr.hotel.Complete(ctx, c, first, HotelBooked{}); !errors.Is(err, saga.ErrNotWaiting) {
		t.Fatalf("the first attempt's token: %v, want ErrNotWaiting", err)
	}
	clk.Advance(t, 73*time.Hour)
	st := sagatest.AwaitStatus(t, c, tr.flow, "t2", 30*time.Second, saga.StatusCompensated)
	if h := st.Step("hotel"); h.Status != saga.StepCompensated || tr.cancelled.Load() != 2 {
		t.Fatalf("after the last timeout: %s, %d undone", stepsOf(st), tr.cancelled.Load())
	}
	if err := tr.hotel.Complete(ctx, c, second, HotelBooked{Confirmation: "late"}); !errors.Is(err, saga.ErrCompensated) {
		t.Fatalf("late completion: %v, want ErrCompensated", err)
	}
}

// TestWaitFail: Abort from outside compensates; a plain error runs the
// step's action again.
func TestWaitFail(t *testing.T) {
	srv := sagatest.NewServer(t)
	clk := srv.Clock()
	tr := newJourney(t)
	c := srv.Client()
	tr.run(t, c)
	ctx := context.Background()
	must(t, saga.Start(ctx, c, tr.flow, "t3", Journey{ID: "t3"}))
	must(t, saga.Start(ctx, c, tr.flow, "t4", Journey{ID: "t4"}))
	tok3 := awaitStep(t, c, tr.flow, "t3", "hotel", saga.StepWaiting).Step("hotel").Token
	tok4 := awaitStep(t, c, tr.flow, "t4", "hotel", saga.StepWaiting).Step("hotel").Token
	must(t, tr.hotel.Fail(ctx, c, tok3, saga.Abortf("no rooms")))
	st := sagatest.AwaitStatus(t, c, tr.flow, "t3", 30*time.Second, saga.StatusCompensated)
	if h := st.Step("hotel"); h.Status != saga.StepFailed || h.Error != "no rooms" {
		t.Fatalf("aborted wait: %+v", h)
	}
	must(t, tr.hotel.Fail(ctx, c, tok4, errors.New("hotel system down")))
	clk.Advance(t, time.Minute) // past the backoff
	st = awaitStep(t, c, tr.flow, "t4", "hotel", saga.StepWaiting)
	if h := st.Step("hotel"); h.Attempts != 2 {
		t.Fatalf("after a failed attempt: %+v", h)
	}
	must(t, tr.hotel.Complete(ctx, c, st.Step("hotel").Token, HotelBooked{Confirmation: "H4"}))
	sagatest.AwaitStatus(t, c, tr.flow, "t4", 30*time.Second, saga.StatusCompleted)
}

// TestWaitEndsWhenSagaCompensates: a cancel while the step waits
// compensates it, and a completion after that is late.
func TestWaitEndsWhenSagaCompensates(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newJourney(t)
	c := srv.Client()
	tr.run(t, c)
	ctx := context.Background()
	must(t, saga.Start(ctx, c, tr.flow, "t5", Journey{ID: "t5"}))
	tok := awaitStep(t, c, tr.flow, "t5", "hotel", saga.StepWaiting).Step("hotel").Token
	op := srv.Ops()
	must(t, op.Cancel(ctx, tr.flow.Name(), "t5", "customer changed plans"))
	st := sagatest.AwaitStatus(t, c, tr.flow, "t5", 30*time.Second, saga.StatusCompensated)
	if h := st.Step("hotel"); h.Status != saga.StepCompensated {
		t.Fatalf("hotel after cancel: %+v", h)
	}
	if err := tr.hotel.Complete(ctx, c, tok, HotelBooked{Confirmation: "late"}); !errors.Is(err, saga.ErrCompensated) {
		t.Fatalf("completion after the cancel: %v, want ErrCompensated", err)
	}
}

// A parcel's journey: the carrier's event completes the delivery step.
type (
	Shipment  struct{ OrderID string }
	Handed    struct{ Parcel string }
	Delivered struct {
		OrderID string `json:"order_id"`
		At      string `json:"at"`
	}
)

// TestEventWait: a step completes on a domain event that names its saga,
// declared in the flow; an event that comes before the step waits is held
// until it does; events of other sagas and of no saga change nothing; a
// saga whose event never comes times out.
func TestEventWait(t *testing.T) {
	srv := sagatest.NewServer(t)
	clk := srv.Clock()
	hand := saga.NewStep[Shipment, Handed]("hand")
	deliver := saga.NewStep[Handed, Delivered]("deliver", saga.WaitsFor("carrier", 72*time.Hour),
		saga.CompletesOn("parcel.delivered", "order_id"), saga.WithRetry(saga.RetryPolicy{MaxAttempts: 1}))
	flowSeq.Lock()
	flowSeq.n++
	f := saga.MustDefine[Shipment](fmt.Sprintf("parcel%d", flowSeq.n), 1, hand, deliver)
	flowSeq.Unlock()
	c := srv.Client()
	ctx := context.Background()
	_, js := srv.Connect()
	bus, err := events.New(ctx, js)
	must(t, err)
	hold := make(chan struct{})
	r, err := saga.NewRunner(c)
	must(t, err)
	must(t, saga.Handle(r, hand, func(ctx context.Context, in Shipment) (Handed, error) {
		if in.OrderID == "early" {
			<-hold // the carrier answers before the step waits
		}
		return Handed{Parcel: "P-" + in.OrderID}, nil
	}, nil))
	must(t, saga.Handle(r, deliver, nil, nil)) // nothing to ask: it waits
	sagatest.Run(t, r)

	must(t, saga.Start(ctx, c, f, "o1", Shipment{OrderID: "o1"}))
	must(t, saga.Start(ctx, c, f, "early", Shipment{OrderID: "early"}))
	must(t, saga.Start(ctx, c, f, "never", Shipment{OrderID: "never"}))
	awaitStep(t, c, f, "o1", "deliver", saga.StepWaiting)
	must(t, events.Publish(ctx, bus, "parcel.delivered", "d-other", Delivered{OrderID: "nobody", At: "x"}))
	must(t, events.Publish(ctx, bus, "parcel.delivered", "d-bad", map[string]int{"order_id": 7}))
	must(t, events.Publish(ctx, bus, "parcel.delivered", "d-o1", Delivered{OrderID: "o1", At: "door"}))
	must(t, events.Publish(ctx, bus, "parcel.delivered", "d-early", Delivered{OrderID: "early", At: "porch"}))
	st := sagatest.AwaitStatus(t, c, f, "o1", 30*time.Second, saga.StatusCompleted)
	if st.Step("deliver").Status != saga.StepCompleted {
		t.Fatalf("o1: %s", stepsOf(st))
	}
	close(hold)
	sagatest.AwaitStatus(t, c, f, "early", 30*time.Second, saga.StatusCompleted)
	evs, err := c.Timeline(ctx, f, "early")
	must(t, err)
	if last := evs[len(evs)-1]; last.Step != "deliver" || last.Phase != "done" || !strings.Contains(string(last.Data), "porch") {
		t.Fatalf("early: last event %s:%s %s", last.Step, last.Phase, last.Data)
	}
	if st, _ := c.Get(ctx, f, "never"); st.Step("deliver").Status != saga.StepWaiting {
		t.Fatalf("never: %s", stepsOf(st))
	}
	clk.Advance(t, 73*time.Hour)
	st = sagatest.AwaitStatus(t, c, f, "never", 30*time.Second, saga.StatusCompensated)
	if d := st.Step("deliver"); d.Status != saga.StepCompensated || !strings.Contains(d.Error, "no answer from carrier") {
		t.Fatalf("never: %+v", d)
	}
}

// TestCompletionStaysInTheSagasTrace: a completion from another process
// (with a span of its own) is a child of the waiting attempt's span, and
// the next step's span follows it in the saga's trace; the caller's span
// is linked.
func TestCompletionStaysInTheSagasTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	srv := sagatest.NewServer(t)
	tr := newJourney(t)
	c := srv.Client(saga.WithTracerProvider(tp))
	tr.run(t, c)
	ctx := context.Background()
	must(t, saga.Start(ctx, c, tr.flow, "t6", Journey{ID: "t6"}))
	st := awaitStep(t, c, tr.flow, "t6", "hotel", saga.StepWaiting)
	webhook, span := tp.Tracer("webhook").Start(ctx, "hotel webhook")
	must(t, tr.hotel.Complete(webhook, srv.Client(saga.WithTracerProvider(tp)), st.Step("hotel").Token, HotelBooked{Confirmation: "H6"}))
	span.End()
	sagatest.AwaitStatus(t, c, tr.flow, "t6", 30*time.Second, saga.StatusCompleted)
	name := tr.flow.Name()
	tree := awaitSpans(t, exp, st.TraceID, name+"/hotel action", name+"/hotel complete", name+"/pay action")
	if p := tree.parentName(tree.byName[name+"/hotel complete"]); p != name+"/hotel action" {
		t.Fatalf("the completion's parent is %q", p)
	}
	if p := tree.parentName(tree.byName[name+"/pay action"]); p != name+"/hotel complete" {
		t.Fatalf("the next step's parent is %q", p)
	}
	links := tree.byName[name+"/hotel complete"].Links
	if len(links) != 1 || links[0].SpanContext.SpanID() != span.SpanContext().SpanID() {
		t.Fatalf("the completion links %v, want the webhook's span", links)
	}
}

// TestDoctorReportsAnOverdueWait: a step whose wait timed out while no
// runner of its owner takes the timer is reported by Diagnose, with whom
// it waits on.
func TestDoctorReportsAnOverdueWait(t *testing.T) {
	type In struct{ N int }
	ask := saga.NewStep[In, In]("ask", saga.Owner("clerk"), saga.WaitsFor("supplier", time.Second))
	flow := saga.MustDefine[In]("overduewait", 1, ask)
	srv := sagatest.NewServer(t)
	c := srv.Client()
	r, err := saga.NewRunner(srv.Client())
	must(t, err)
	must(t, saga.Handle(r, ask, func(context.Context, In) (In, error) { return saga.Later[In]() }, nil))
	stop := sagatest.Run(t, r)
	ctx := context.Background()
	must(t, saga.Start(ctx, c, flow, "w1", In{1}))
	awaitStep(t, c, flow, "w1", "ask", saga.StepWaiting)
	stop() // nobody takes the step's timer now
	var found []string
	sagatest.Poll(t, 20*time.Second, func() bool {
		fs, err := srv.Ops().Diagnose(ctx, ops.DiagnoseOptions{Overdue: 100 * time.Millisecond})
		if err != nil {
			return false
		}
		found = found[:0]
		for _, f := range fs {
			found = append(found, f.Kind+": "+f.What)
			if f.Kind == "wait-overdue" && f.Flow == "overduewait" && strings.Contains(f.What, "waits on supplier") && strings.Contains(f.What, "w1") {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("no overdue wait found: %q", found) })
}

// TestClockMovesSchedulesAndDeadlines: a saga scheduled a day ahead
// begins when the test clock passes its time, and a saga whose step
// waits past the saga's deadline (a week: far beyond the wait) is
// compensated when the clock passes the deadline; both in test time.
func TestClockMovesSchedulesAndDeadlines(t *testing.T) {
	srv := sagatest.NewServer(t)
	clk := srv.Clock()
	ask := saga.NewStep[Journey, HotelBooked]("ask", saga.WaitsFor("hotel", 30*24*time.Hour), saga.Undo("forget"))
	flowSeq.Lock()
	flowSeq.n++
	f := saga.MustDefine[Journey](fmt.Sprintf("clocked%d", flowSeq.n), 1, ask, saga.Deadline(7*24*time.Hour))
	flowSeq.Unlock()
	c := srv.Client()
	r, err := saga.NewRunner(c)
	must(t, err)
	var undone atomic.Int32
	must(t, saga.Handle(r, ask, nil, func(context.Context, Journey, HotelBooked) error { undone.Add(1); return nil }))
	sagatest.Run(t, r)
	ctx := context.Background()

	must(t, saga.Start(ctx, c, f, "later", Journey{ID: "later"}, saga.After(24*time.Hour)))
	if st, _ := c.Get(ctx, f, "later"); st.Status != saga.StatusScheduled {
		t.Fatalf("a saga started for tomorrow is %s", st.Status)
	}
	clk.Advance(t, 23*time.Hour)
	if st, _ := c.Get(ctx, f, "later"); st.Status != saga.StatusScheduled {
		t.Fatalf("an hour before its time the saga is %s", st.Status)
	}
	clk.Advance(t, 2*time.Hour)
	awaitStep(t, c, f, "later", "ask", saga.StepWaiting)

	must(t, saga.Start(ctx, c, f, "now", Journey{ID: "now"}))
	awaitStep(t, c, f, "now", "ask", saga.StepWaiting)
	clk.Advance(t, 8*24*time.Hour) // past both deadlines, short of the waits
	for _, id := range []string{"later", "now"} {
		st := sagatest.AwaitStatus(t, c, f, id, 30*time.Second, saga.StatusCompensated)
		if st.Reason != "saga deadline exceeded" || st.Step("ask").Status != saga.StepCompensated {
			t.Fatalf("%s: %s (%s)", id, stepsOf(st), st.Reason)
		}
	}
	if undone.Load() != 2 {
		t.Fatalf("%d compensations, want 2", undone.Load())
	}
}

// TestCompletionBeforeTheWaitIsRecorded: an answer that comes while the
// action that asked for it is still running (a fast callback) waits for
// the wait to be recorded, then completes the step.
func TestCompletionBeforeTheWaitIsRecorded(t *testing.T) {
	srv := sagatest.NewServer(t)
	ask := saga.NewStep[Journey, HotelBooked]("ask", saga.WaitsFor("hotel", time.Hour))
	flowSeq.Lock()
	flowSeq.n++
	f := saga.MustDefine[Journey](fmt.Sprintf("fast%d", flowSeq.n), 1, ask)
	flowSeq.Unlock()
	c := srv.Client()
	r, err := saga.NewRunner(c)
	must(t, err)
	answered := make(chan error, 1)
	must(t, saga.Handle(r, ask, func(ctx context.Context, in Journey) (HotelBooked, error) {
		tok := saga.CompletionToken(ctx)
		go func() {
			answered <- ask.Complete(context.Background(), srv.Client(), tok, HotelBooked{Confirmation: "fast"})
		}()
		// The answer is on its way before this action returns.
		time.Sleep(300 * time.Millisecond)
		return saga.Later[HotelBooked]()
	}, nil))
	sagatest.Run(t, r)
	must(t, saga.Start(context.Background(), c, f, "f1", Journey{ID: "f1"}))
	select {
	case err := <-answered:
		must(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the completion never returned")
	}
	sagatest.AwaitStatus(t, c, f, "f1", 30*time.Second, saga.StatusCompleted)
	sagatest.AssertTimeline(t, c, f, "f1", "_saga:start", "ask:waiting", "ask:done")
}

// TestCompletionNeedsTheOwnersIdentity: with the permissions access
// derives from the flow, another participant cannot complete a waiting
// step (the broker refuses the append, nothing changes); the step
// owner's identity can, from a process that never ran the step.
func TestCompletionNeedsTheOwnersIdentity(t *testing.T) {
	flight := saga.NewStep[Journey, FlightTicket]("flight", saga.Owner("airline"), saga.Undo("cancel"))
	hotel := saga.NewStep[FlightTicket, HotelBooked]("hotel", saga.Owner("hotel"), saga.WaitsFor("hotel-desk", time.Hour))
	f := saga.MustDefine[Journey]("guarded", 1, flight, hotel, saga.StartedBy("agent"))
	perms, err := access.Permissions(f)
	must(t, err)
	users := []*server.User{{Username: "admin", Password: "a"}}
	for _, who := range []string{"airline", "hotel"} {
		p := perms[who]
		users = append(users, &server.User{Username: who, Password: who, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: p.Publish.Allow, Deny: p.Publish.Deny},
			Subscribe: &server.SubjectPermission{Allow: p.Subscribe.Allow, Deny: p.Subscribe.Deny},
		}})
	}
	srv := sagatest.NewServer(t, func(o *server.Options) { o.Users, o.NoAuthUser = users, "admin" })
	admin := srv.Client()
	r, err := saga.NewRunner(admin)
	must(t, err)
	must(t, saga.Handle(r, flight, func(context.Context, Journey) (FlightTicket, error) { return FlightTicket{Ticket: "T"}, nil }, nil))
	must(t, saga.Handle(r, hotel, nil, nil))
	sagatest.Run(t, r)
	ctx := context.Background()
	must(t, saga.Start(ctx, admin, f, "g1", Journey{ID: "g1"}))
	tok := awaitStep(t, admin, f, "g1", "hotel", saga.StepWaiting).Step("hotel").Token
	as := func(who string) *saga.Client {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(who, who), nats.CustomInboxPrefix(access.InboxPrefix(who)),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		must(t, err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		must(t, err)
		c, err := saga.Open(ctx, js)
		must(t, err)
		return c
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := hotel.Complete(cctx, as("airline"), tok, HotelBooked{Confirmation: "forged"}); err == nil {
		t.Fatal("the airline completed the hotel's step")
	}
	if st, _ := admin.Get(ctx, f, "g1"); st.Step("hotel").Status != saga.StepWaiting || st.Events != 3 {
		t.Fatalf("after the airline's attempt: %s, %d events", stepsOf(st), st.Events)
	}
	must(t, hotel.Complete(ctx, as("hotel"), tok, HotelBooked{Confirmation: "H"}))
	st := sagatest.AwaitStatus(t, admin, f, "g1", 30*time.Second, saga.StatusCompleted)
	evs, err := admin.Timeline(ctx, f, "g1")
	must(t, err)
	if !strings.Contains(string(evs[len(evs)-1].Data), `"Confirmation":"H"`) {
		t.Fatalf("the hotel's result: %s (%s)", evs[len(evs)-1].Data, stepsOf(st))
	}
}
