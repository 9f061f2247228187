package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// parking is a flow whose sagas park: hold's compensation fails (once,
// no retries) while broken is set, and pay aborts every saga.
type parking struct {
	f      *saga.Flow[Ticket]
	broken atomic.Bool
	mu     sync.Mutex
	undone map[int]int // saga number -> successful compensations of hold
}

func newParking(t *testing.T, srv *sagatest.Server, c *saga.Client) *parking {
	t.Helper()
	flowSeq.Lock()
	flowSeq.n++
	name := fmt.Sprintf("parking%d", flowSeq.n)
	flowSeq.Unlock()
	p := &parking{undone: map[int]int{}}
	p.broken.Store(true)
	hold := saga.NewStep[Ticket, Ticket]("hold", saga.WithCompensationRetry(saga.RetryPolicy{MaxAttempts: 1}))
	pay := saga.NewStep[Ticket, Ticket]("pay")
	p.f = saga.MustDefine[Ticket](name, 1, hold, pay)
	r, err := saga.NewRunner(c, saga.WithConcurrency(64))
	if err != nil {
		t.Fatal(err)
	}
	must(t, saga.Handle(r, hold, func(_ context.Context, t Ticket) (Ticket, error) { return t, nil },
		func(_ context.Context, t Ticket, _ Ticket) error {
			if p.broken.Load() {
				return errors.New("warehouse API down")
			}
			p.mu.Lock()
			p.undone[t.N]++
			p.mu.Unlock()
			return nil
		}))
	must(t, saga.Handle(r, pay, func(_ context.Context, t Ticket) (Ticket, error) { return t, saga.Abortf("declined") }, nil))
	sagatest.Run(t, r)
	return p
}

// sagasIn counts the sagas of f in status.
func sagasIn(t testing.TB, c *saga.Client, f saga.FlowRef, status saga.Status) int {
	t.Helper()
	l, err := c.List(context.Background(), f, status)
	if err != nil {
		t.Fatal(err)
	}
	return len(l)
}

// The scale case: a bulk retry of 1,000 parked sagas finishes,
// each retried once, with the act's audit event in every saga's log; run
// again, it acts on none. CHOREO_BULK_N changes the count.
func TestBulkRetryOfParkedSagas(t *testing.T) {
	n := 1000
	if s := os.Getenv("CHOREO_BULK_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	srv := sagatest.NewServer(t)
	c := srv.Client()
	op := srv.Ops()
	p := newParking(t, srv, c)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := saga.Start(ctx, c, p.f, fmt.Sprintf("s%04d", i), Ticket{N: i}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sagatest.Poll(t, 5*time.Minute, func() bool { return sagasIn(t, c, p.f, saga.StatusCompensationFailed) == n },
		func() string {
			return fmt.Sprintf("%d of %d sagas parked", sagasIn(t, c, p.f, saga.StatusCompensationFailed), n)
		})

	spec := ops.BulkSpec{Action: ops.BulkRetry, Filter: ops.Filter{Flow: p.f.Name()}, Reason: "warehouse API back", Rate: 2000}
	if _, err := op.Bulk(ctx, ops.BulkSpec{Action: ops.BulkRetry, Filter: spec.Filter}, nil); !errors.Is(err, saga.ErrInvalidOption) {
		t.Errorf("a bulk act without a reason: %v, want ErrInvalidOption", err)
	}
	plan, err := op.PlanBulk(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Count != n || len(plan.Sample) == 0 || plan.Sample[0].Status != saga.StatusCompensationFailed {
		t.Fatalf("dry run: %d sagas, sample %+v; want %d parked", plan.Count, plan.Sample, n)
	}
	if sagasIn(t, c, p.f, saga.StatusCompensationFailed) != n {
		t.Fatal("the dry run changed something")
	}

	p.broken.Store(false)
	var calls atomic.Int64
	began := time.Now()
	rec, err := op.Bulk(ctx, spec, func(r ops.BulkRecord) { calls.Add(1) })
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bulk retry of %d parked sagas: %v, %.0f sagas/s", n, took.Round(time.Millisecond), float64(n)/took.Seconds())
	if rec.State != ops.BulkFinished || rec.Matched != n || rec.Done != n || rec.Skipped != 0 || rec.Failed != 0 || int(calls.Load()) != n {
		t.Fatalf("bulk record %+v (progress called %d times)", rec, calls.Load())
	}
	sagatest.Poll(t, 5*time.Minute, func() bool { return sagasIn(t, c, p.f, saga.StatusCompensated) == n },
		func() string {
			return fmt.Sprintf("%d of %d sagas compensated", sagasIn(t, c, p.f, saga.StatusCompensated), n)
		})
	p.mu.Lock()
	for i := range n {
		if p.undone[i] != 1 {
			t.Errorf("saga s%04d: hold compensated %d times, want once", i, p.undone[i])
		}
	}
	p.mu.Unlock()
	// The audit: every saga's log has the retry, naming the act.
	for _, i := range []int{0, n / 2, n - 1} {
		events, err := c.Timeline(ctx, p.f, fmt.Sprintf("s%04d", i))
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, e := range events {
			var a ops.Audit
			if e.Phase == saga.PhaseResume && json.Unmarshal(e.Data, &a) == nil && a.Bulk == rec.ID && a.Reason == spec.Reason && a.By != "" {
				found++
			}
		}
		if found != 1 {
			t.Errorf("saga s%04d: %d retries of bulk act %s in its log, want 1", i, found, rec.ID)
		}
	}
	// Listed with its outcome; and run again, it has nothing to do.
	listed, err := op.BulkActs(ctx)
	if err != nil || len(listed) != 1 || listed[0].ID != rec.ID || listed[0].Done != n || listed[0].State != ops.BulkFinished {
		t.Fatalf("BulkActs = %+v, %v", listed, err)
	}
	again, err := op.Bulk(ctx, spec, nil)
	if err != nil || again.Matched != 0 || again.Done != 0 {
		t.Errorf("the act run again: %+v, %v; want nothing matched", again, err)
	}
}

// A bulk cancel skips, with the reason, what it no longer applies to (a
// saga cancelled meanwhile); it can be stopped through its record, and
// stopping it reads stopped.
func TestBulkCancelSkipsAndStops(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newTrip(t)
	ctx := context.Background()
	op := srv.Ops()
	c := srv.Client()
	// No runner for hotel: the sagas wait there, running.
	tr.runner(t, c, "book")
	for i := range 6 {
		if err := saga.Start(ctx, c, tr.v1, fmt.Sprintf("k%d", i), Trip{Who: "k"}); err != nil {
			t.Fatal(err)
		}
	}
	sagatest.Poll(t, 30*time.Second, func() bool {
		l, err := c.List(ctx, tr.v1, saga.StatusRunning)
		if err != nil || len(l) != 6 {
			return false
		}
		for _, st := range l {
			if st.Step("hotel").Status != saga.StepRunning {
				return false
			}
		}
		return true
	}, func() string { return "sagas not at hotel" })
	spec := ops.BulkSpec{Action: ops.BulkCancel, Filter: ops.Filter{Flow: tr.name, Step: "hotel"}, Reason: "hotel chain bankrupt", Rate: 2}
	// One saga is cancelled by hand while the act runs (before the act
	// reaches it, at 2 a second): it is skipped.
	skipped := make(chan struct{})
	var once sync.Once
	var id string
	rec, err := op.Bulk(ctx, spec, func(r ops.BulkRecord) {
		once.Do(func() {
			id = r.ID
			must(t, op.Cancel(ctx, tr.name, "k1", "by hand"))
			close(skipped)
		})
		if r.Handled() == 5 {
			// Stop before the last one: it must be left alone.
			must(t, op.StopBulk(ctx, r.ID))
		}
	})
	<-skipped
	if !errors.Is(err, ops.ErrStopped) {
		t.Fatalf("a stopped act: %v, want ErrStopped (%+v)", err, rec)
	}
	if rec.State != ops.BulkStopped || rec.Done != 4 || rec.Skipped != 1 || len(rec.Items) != 1 || rec.Items[0].ID != "k1" || rec.Items[0].Outcome != ops.BulkSkipped {
		t.Fatalf("record %+v", rec)
	}
	if st, err := c.Get(ctx, tr.v1, "k5"); err != nil || st.Status != saga.StatusRunning {
		t.Errorf("the saga after the stop: %+v, %v; want it left running", st, err)
	}
	st, err := c.Get(ctx, tr.v1, "k2")
	if err != nil || st.Status != saga.StatusCompensating || st.Reason != "cancelled: hotel chain bankrupt" { // hotel, unserved, never settles
		t.Errorf("a saga the act cancelled: %+v, %v", st, err)
	}
	stored, err := op.BulkAct(ctx, id)
	if err != nil || stored.State != ops.BulkStopped || stored.Done != rec.Done {
		t.Errorf("stored record %+v, %v", stored, err)
	}
	if _, err := op.BulkAct(ctx, "nope"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("unknown act: %v", err)
	}
}

// A bulk pause holds every saga it selects; a bulk resume runs them; each
// act is in every saga's log with the act's id, and a second resume skips
// nothing because it selects only paused sagas.
func TestBulkPauseAndResume(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newTrip(t)
	ctx := context.Background()
	op := srv.Ops()
	c := srv.Client()
	tr.runner(t, c, "book", "hotel", "pay")
	ids := []string{"q0", "q1", "q2"}
	var release []func()
	for _, id := range ids {
		release = append(release, tr.holdStep(id, "book")) // book under way when the pause lands
		if err := saga.Start(ctx, c, tr.v1, id, Trip{Who: id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		sagatest.Poll(t, 30*time.Second, func() bool { return tr.count(id, "v1 book:action") == 1 }, func() string { return id + ": book never ran" })
	}
	pause, err := op.Bulk(ctx, ops.BulkSpec{Action: ops.BulkPause, Filter: ops.Filter{Flow: tr.name}, Reason: "audit"}, nil)
	if err != nil || pause.Done != 3 {
		t.Fatalf("bulk pause: %+v %v", pause, err)
	}
	for _, r := range release {
		r()
	}
	for _, id := range ids {
		sagatest.Poll(t, 30*time.Second, func() bool {
			st, err := c.Get(ctx, tr.v1, id)
			return err == nil && st.Step("hotel").Held && st.Paused != nil && st.Paused.Bulk == pause.ID
		}, func() string { return id + " not held" })
		if n := tr.count(id, "v1 hotel:action"); n != 0 {
			t.Fatalf("%s: hotel ran while paused", id)
		}
	}
	resume, err := op.Bulk(ctx, ops.BulkSpec{Action: ops.BulkResume, Filter: ops.Filter{Flow: tr.name}, Reason: "audit done"}, nil)
	if err != nil || resume.Done != 3 {
		t.Fatalf("bulk resume: %+v %v", resume, err)
	}
	for _, id := range ids {
		sagatest.AwaitStatus(t, c, tr.v1, id, 30*time.Second, saga.StatusCompleted)
		if n := tr.count(id, "v1 hotel:action"); n != 1 {
			t.Errorf("%s: hotel ran %d times", id, n)
		}
		events, err := c.Timeline(ctx, tr.v1, id)
		if err != nil {
			t.Fatal(err)
		}
		bulks := map[string]saga.Phase{}
		for _, e := range events {
			var a ops.Audit
			if json.Unmarshal(e.Data, &a) == nil && a.Bulk != "" {
				bulks[a.Bulk] = e.Phase
			}
		}
		if bulks[pause.ID] != saga.PhasePaused || bulks[resume.ID] != saga.PhaseUnpaused {
			t.Errorf("%s: the acts in its log: %v", id, bulks)
		}
	}
	again, err := op.Bulk(ctx, ops.BulkSpec{Action: ops.BulkResume, Filter: ops.Filter{Flow: tr.name}, Reason: "again"}, nil)
	if err != nil || again.Matched != 0 {
		t.Errorf("a second resume: %+v %v", again, err)
	}
}

// A bulk act selects by search attributes too: the index gives the
// candidates. A dry run counts them, the act cancels only them, and a
// condition on an attribute no flow declares is refused, not read as
// matching nothing.
func TestBulkCancelBySearchAttribute(t *testing.T) {
	srv := sagatest.NewServer(t)
	ctx := context.Background()
	c, op := srv.Client(), srv.Ops()
	f, _ := searchFlow(t, "bulkbuy") // no runner: the sagas stay running at charge
	for id, p := range map[string]Purchase{"b1": {"c-1", 50, "DE"}, "b2": {"c-1", 150, "FR"}, "b3": {"c-2", 300, "DE"}, "b4": {"c-3", 20, "DE"}} {
		must(t, saga.Start(ctx, c, f, id, p))
	}
	cond := func(s string) ops.Cond {
		cd, err := ops.ParseCond(s)
		must(t, err)
		return cd
	}
	spec := ops.BulkSpec{Action: ops.BulkCancel, Reason: "fraud ring", Filter: ops.Filter{Flow: f.Name(), Where: []ops.Cond{cond("country=DE"), cond("total>30")}}}
	plan, err := op.PlanBulk(ctx, spec)
	if err != nil || plan.Count != 2 {
		t.Fatalf("dry run: %+v, %v; want b1 and b3", plan, err)
	}
	rec, err := op.Bulk(ctx, spec, nil)
	if err != nil || rec.Done != 2 {
		t.Fatalf("bulk cancel: %+v, %v", rec, err)
	}
	for id, want := range map[string]saga.Status{"b1": saga.StatusCompensating, "b3": saga.StatusCompensating, "b2": saga.StatusRunning, "b4": saga.StatusRunning} {
		st, err := c.Get(ctx, f, id)
		if err != nil || (st.Status != want && !(want == saga.StatusCompensating && st.Status == saga.StatusCompensated)) {
			t.Errorf("%s: %+v, %v; want %s", id, st, err, want)
		}
	}
	bad := spec
	bad.Filter.Where = []ops.Cond{cond("colour=red")}
	if _, err := op.PlanBulk(ctx, bad); !errors.Is(err, saga.ErrInvalidOption) {
		t.Errorf("a condition on an attribute no flow declares: %v, want ErrInvalidOption", err)
	}
}
