package saga_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

var fast = saga.RetryPolicy{InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}

func fastRetries(attempts int) saga.RetryPolicy {
	p := fast
	p.MaxAttempts = attempts
	return p
}

func TestHappyPath(t *testing.T) {
	e := newEnv(t, 0, nil)
	e.start(t, "o1")
	st := e.await(t, "o1", saga.StatusCompleted)
	for _, ss := range st.Steps {
		if ss.Status != saga.StepCompleted || ss.Attempts != 1 || ss.StartedAt.IsZero() || ss.EndedAt.Before(ss.StartedAt) {
			t.Errorf("step %+v", ss)
		}
		if n := e.l.count("o1", ss.Name, "action"); n != 1 {
			t.Errorf("step %s effect happened %d times", ss.Name, n)
		}
	}
	tl := sagatest.Timeline(t, e.c, e.s.flow, "o1")
	// The parallel members may finish in either order.
	if len(tl) != 6 || tl[0] != "_saga:start" || tl[1] != "charge:done" || tl[4] != "confirm:done" || tl[5] != "notify:done" ||
		!slices.Contains(tl[2:4], "reserve:done") || !slices.Contains(tl[2:4], "invoice:done") {
		t.Errorf("timeline %q", tl)
	}
	if st.EndedAt.IsZero() {
		t.Error("completed saga has no end time")
	}
}

func TestStartTwiceStartsOneSaga(t *testing.T) {
	e := newEnv(t, 0, nil)
	e.start(t, "twice")
	e.start(t, "twice")
	e.await(t, "twice", saga.StatusCompleted)
	e.start(t, "twice") // after it ended, too
	if n := e.l.count("twice", "charge", "action"); n != 1 {
		t.Errorf("charged %d times", n)
	}
	if n := e.rec.Tries("twice", "charge:action"); n != 1 {
		t.Errorf("charge action called %d times", n)
	}
	if got := sagatest.Timeline(t, e.c, e.s.flow, "twice"); got[0] != "_saga:start" || slices.Index(got[1:], "_saga:start") >= 0 {
		t.Errorf("timeline %q", got)
	}
}

func TestStartRejectsBadCalls(t *testing.T) {
	e := newEnv(t, 0, nil)
	ctx := context.Background()
	// An input of the wrong type does not compile: Start takes the flow's In.
	for _, tc := range []struct {
		name  string
		flow  *saga.Flow[Order]
		id    string
		input Order
		want  error
	}{
		{"id with a dot", e.s.flow, "a.b", Order{}, saga.ErrInvalidID},
		{"id with a wildcard", e.s.flow, "a*", Order{}, saga.ErrInvalidID},
		{"empty id", e.s.flow, "", Order{}, saga.ErrInvalidID},
		{"nil flow", nil, "ok", Order{}, saga.ErrInvalidFlow},
		{"input over the event size limit", e.s.flow, "big", Order{ID: strings.Repeat("x", 600<<10)}, saga.ErrInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := saga.Start(ctx, e.c, tc.flow, tc.id, tc.input); !errors.Is(err, tc.want) {
				t.Errorf("Start = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := e.c.Get(ctx, e.s.flow, "never-started"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("Get of a missing saga = %v, want ErrNotFound", err)
	}
	// A flow named by hand finds the same saga, and a misspelt one nothing.
	e.start(t, "named")
	e.await(t, "named", saga.StatusCompleted)
	if st, err := e.c.Get(ctx, saga.Named(e.s.flow.Name()), "named"); err != nil || st.Status != saga.StatusCompleted {
		t.Errorf("Get by name: %v %v", st, err)
	}
	if _, err := e.c.Get(ctx, saga.Named(e.s.flow.Name()+"x"), "named"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("Get of a misspelt flow = %v, want ErrNotFound", err)
	}
}

func TestSweep(t *testing.T) {
	s := newShop(t, 0, nil)
	l := newLedger()
	sagatest.RunSweep(t, sagatest.Sweep[Order]{
		Flow:  s.flow,
		Input: Order{ID: "sweep", Amount: 7},
		Bind:  func(r *saga.Runner) error { return s.bind(r, l) },
	})
}

func TestParallelMemberFailsSiblingsCompensate(t *testing.T) {
	e := newEnv(t, 0, nil)
	// reserve refuses only once invoice has completed, so there is a
	// completed sibling to compensate.
	e.l.on("p1", "reserve:action", func(ctx context.Context, _ int) error {
		for e.l.count("p1", "invoice", "action") == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
		return saga.Abortf("out of stock")
	})
	e.start(t, "p1")
	st := e.await(t, "p1", saga.StatusCompensated)
	want := map[string]saga.StepStatus{"charge": saga.StepCompensated, "reserve": saga.StepFailed, "invoice": saga.StepCompensated, "confirm": saga.StepPending, "notify": saga.StepPending}
	for name, w := range want {
		if got := st.Step(name).Status; got != w {
			t.Errorf("%s is %s, want %s", name, got, w)
		}
	}
	if !strings.Contains(st.Reason, "out of stock") {
		t.Errorf("reason %q", st.Reason)
	}
	tl := sagatest.Timeline(t, e.c, e.s.flow, "p1")
	if slices.Index(tl, "invoice:compensated") > slices.Index(tl, "charge:compensated") {
		t.Errorf("charge compensated before its later sibling step: %q", tl)
	}
	if e.l.count("p1", "reserve", "compensation") != 0 {
		t.Error("the failed step was compensated")
	}
}

func TestTransientErrorsThenSuccess(t *testing.T) {
	e := newEnv(t, 0, func(s *shop) { s.chargeOpts = []saga.StepOption{saga.WithRetry(fastRetries(5))} })
	e.l.on("t1", "charge:action", func(_ context.Context, attempt int) error {
		if attempt < 3 {
			return fmt.Errorf("gateway busy (attempt %d)", attempt)
		}
		return nil
	})
	e.start(t, "t1")
	st := e.await(t, "t1", saga.StatusCompleted)
	if a := st.Step("charge").Attempts; a != 3 {
		t.Errorf("charge attempts %d, want 3", a)
	}
	if n := e.l.count("t1", "charge", "action"); n != 1 {
		t.Errorf("charged %d times", n)
	}
}

func TestRetriesExhaustedCompensates(t *testing.T) {
	e := newEnv(t, 0, func(s *shop) { s.invoiceOpts = []saga.StepOption{saga.WithRetry(fastRetries(3))} })
	e.l.on("x1", "invoice:action", func(context.Context, int) error { return errors.New("billing down") })
	e.start(t, "x1")
	st := e.await(t, "x1", saga.StatusCompensated)
	// An earlier attempt may have billed before its outcome was lost:
	// the step is unknown, and compensated.
	inv := st.Step("invoice")
	if inv.Status != saga.StepCompensated || inv.Attempts != 3 || !strings.Contains(inv.Error, "retries exhausted") || !strings.Contains(inv.Error, "billing down") {
		t.Errorf("invoice %+v", inv)
	}
	if n := e.rec.Tries("x1", "invoice:action"); n != 3 {
		t.Errorf("invoice tried %d times, want 3", n)
	}
	if st.Step("charge").Status != saga.StepCompensated {
		t.Errorf("charge is %s", st.Step("charge").Status)
	}
}

func TestRetryIsVisibleWhileItWaits(t *testing.T) {
	e := newEnv(t, 0, func(s *shop) {
		s.chargeOpts = []saga.StepOption{saga.WithRetry(saga.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Hour})}
	})
	e.l.on("v1", "charge:action", func(context.Context, int) error { return errors.New("card network timeout") })
	e.start(t, "v1")
	sagatest.Poll(t, 10*time.Second, func() bool {
		st, err := e.c.Get(context.Background(), e.s.flow, "v1")
		return err == nil && st.Step("charge").Attempts == 1 && strings.Contains(st.Step("charge").Error, "card network timeout")
	}, func() string { return "the failed attempt is not in the saga's state" })
}

func TestStepTimeoutCompensatesLateResult(t *testing.T) {
	e := newEnv(t, 0, func(s *shop) { s.reserveOpts = []saga.StepOption{saga.WithTimeout(300 * time.Millisecond)} })
	// An action that ignores its context and succeeds late.
	e.l.on("late", "reserve:action", func(context.Context, int) error {
		time.Sleep(600 * time.Millisecond)
		return nil
	})
	// An action that honours its context.
	e.l.on("prompt", "reserve:action", func(ctx context.Context, _ int) error {
		<-ctx.Done()
		return ctx.Err()
	})
	e.start(t, "late")
	e.start(t, "prompt")
	st := e.await(t, "late", saga.StatusCompensated)
	if r := st.Step("reserve"); r.Status != saga.StepCompensated || e.l.count("late", "reserve", "compensation") != 1 {
		t.Errorf("late result not compensated: %+v", r)
	}
	if !strings.Contains(st.Reason, "timed out") {
		t.Errorf("reason %q", st.Reason)
	}
	// No outcome in time: the effect is unknown, so it is compensated.
	st = e.await(t, "prompt", saga.StatusCompensated)
	if r := st.Step("reserve"); r.Status != saga.StepCompensated || !strings.Contains(r.Error, "") || !strings.Contains(st.Reason, "timed out") {
		t.Errorf("reserve %+v, reason %q", r, st.Reason)
	}
	if e.l.count("prompt", "reserve", "compensation") != 1 {
		t.Error("a timed-out step was not compensated")
	}
	for _, id := range []string{"late", "prompt"} {
		if e.l.count(id, "charge", "compensation") != 1 {
			t.Errorf("%s: charge not compensated once", id)
		}
	}
}

// Regression (found by test/faults): an action made its effect and its
// process died before recording it; the redelivery came after the step's
// timeout, which recorded the step failed, so its effect was never undone.
// A step with no outcome in time is now unknown and compensated.
func TestEffectLostInACrashPastTheTimeoutIsCompensated(t *testing.T) {
	e := newEnv(t, 0, func(s *shop) {
		s.reserveOpts = []saga.StepOption{saga.WithTimeout(300 * time.Millisecond), saga.WithRetry(saga.RetryPolicy{InitialBackoff: 800 * time.Millisecond})}
	})
	e.l.on("crash", "reserve:action", func(_ context.Context, attempt int) error {
		if attempt == 1 {
			panic("the process dies after the effect") // the next delivery comes after the timeout
		}
		return nil
	})
	e.start(t, "crash")
	st := e.await(t, "crash", saga.StatusCompensated)
	if r := st.Step("reserve"); r.Status != saga.StepCompensated {
		t.Errorf("reserve %+v", r)
	}
	if n := e.l.count("crash", "reserve", "compensation"); n != 1 {
		t.Errorf("reserve compensated %d times, want 1", n)
	}
	if tl := sagatest.Timeline(t, e.c, e.s.flow, "crash"); !slices.Contains(tl, "reserve:timed-out") || !slices.Contains(tl, "reserve:compensated") {
		t.Errorf("timeline %v", tl)
	}
}

// Regression (found by test/faults): a step whose process died after its
// effect was redelivered once its sibling had failed, and was skipped, so
// its effect was never undone. It is now abandoned and compensated.
func TestRedeliveryWhileCompensatingIsCompensated(t *testing.T) {
	e := newEnv(t, 0, func(s *shop) {
		s.reserveOpts = []saga.StepOption{saga.WithRetry(saga.RetryPolicy{InitialBackoff: 800 * time.Millisecond})}
	})
	e.l.on("r1", "reserve:action", func(_ context.Context, attempt int) error {
		if attempt == 1 {
			panic("the process dies after the effect")
		}
		return nil
	})
	e.l.on("r1", "invoice:action", func(context.Context, int) error { return saga.Abortf("no invoice") })
	e.start(t, "r1")
	st := e.await(t, "r1", saga.StatusCompensated)
	if r := st.Step("reserve"); r.Status != saga.StepCompensated || e.l.count("r1", "reserve", "compensation") != 1 {
		t.Errorf("reserve %+v, compensated %d times", r, e.l.count("r1", "reserve", "compensation"))
	}
	if tl := sagatest.Timeline(t, e.c, e.s.flow, "r1"); !slices.Contains(tl, "reserve:abandoned") {
		t.Errorf("timeline %v", tl)
	}
}

func TestSagaDeadlineFiresWithEveryProcessGone(t *testing.T) {
	srv := sagatest.NewServer(t)
	s := newShop(t, time.Second, nil)
	// The starter: a process that starts the saga and is gone.
	func() {
		nc, js := srv.Connect()
		defer nc.Close()
		c, err := saga.New(context.Background(), js)
		if err != nil {
			t.Fatal(err)
		}
		if err := saga.Start(context.Background(), c, s.flow, "d1", Order{ID: "d1"}); err != nil {
			t.Fatal(err)
		}
	}()
	// No participant runs: the broker alone fires the timer.
	_, js := srv.Connect()
	timers, err := js.Stream(context.Background(), access.TimerStream)
	if err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 10*time.Second, func() bool {
		_, err := timers.GetLastMsgForSubject(context.Background(), "choreo.timer."+s.flow.Name()+".d1.v1")
		return err == nil
	}, func() string { return "the broker did not fire the deadline" })

	c := srv.Client()
	l := newLedger()
	r, _ := saga.NewRunner(c)
	if err := s.bind(r, l); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	st := sagatest.AwaitStatus(t, c, s.flow, "d1", 10*time.Second, saga.StatusCompensated)
	if !strings.Contains(st.Reason, "deadline") {
		t.Errorf("reason %q", st.Reason)
	}
	if l.count("d1", "charge", "action") != 0 {
		t.Error("charged after the deadline")
	}
}

func TestSagaDeadlineInterruptsARunningStep(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, time.Second, nil)
	e.l.on("d2", "reserve:action", func(context.Context, int) error { <-release; return nil }) // ignores ctx
	e.start(t, "d2")
	st := e.await(t, "d2", saga.StatusCompensating)
	if st.Reason != "saga deadline exceeded" {
		t.Errorf("reason %q", st.Reason)
	}
	if tl := sagatest.Timeline(t, e.c, e.s.flow, "d2"); !slices.Contains(tl, "_saga:deadline") {
		t.Errorf("no deadline event in %q", tl)
	}
	// charge waits for reserve: a compensation never overtakes a running step.
	if st.Step("charge").Status == saga.StepCompensated {
		t.Error("charge compensated while reserve was still running")
	}
	close(release)
	st = e.await(t, "d2", saga.StatusCompensated)
	if st.Step("reserve").Status != saga.StepCompensated {
		t.Errorf("late reserve is %s", st.Step("reserve").Status)
	}
	tl := sagatest.Timeline(t, e.c, e.s.flow, "d2")
	if slices.Index(tl, "reserve:compensated") > slices.Index(tl, "charge:compensated") {
		t.Errorf("order %q", tl)
	}
}

func TestCompensationTransientFailure(t *testing.T) {
	e := newEnv(t, 0, func(s *shop) { s.chargeOpts = []saga.StepOption{saga.WithCompensationRetry(fastRetries(5))} })
	e.l.on("c1", "reserve:action", func(context.Context, int) error { return saga.Abortf("sold out") })
	e.l.on("c1", "charge:compensation", func(_ context.Context, attempt int) error {
		if attempt < 3 {
			return errors.New("refund api busy")
		}
		return nil
	})
	e.start(t, "c1")
	st := e.await(t, "c1", saga.StatusCompensated)
	if ch := st.Step("charge"); ch.CompensationAttempts != 3 || ch.Status != saga.StepCompensated {
		t.Errorf("charge %+v", ch)
	}
	if n := e.l.count("c1", "charge", "compensation"); n != 1 {
		t.Errorf("refunded %d times", n)
	}
}

func TestCompensationParkedThenOperatorRetry(t *testing.T) {
	e := newEnv(t, 0, func(s *shop) { s.chargeOpts = []saga.StepOption{saga.WithCompensationRetry(fastRetries(3))} })
	var refundWorks atomic.Bool
	e.l.on("c2", "reserve:action", func(context.Context, int) error { return saga.Abortf("sold out") })
	e.l.on("c2", "charge:compensation", func(context.Context, int) error {
		if !refundWorks.Load() {
			return errors.New("refund api rejects the request")
		}
		return nil
	})
	e.start(t, "c2")
	st := e.await(t, "c2", saga.StatusCompensationFailed)
	// The action succeeded: its Error stays empty; the compensation's
	// failure is in CompensationError.
	if ch := st.Step("charge"); ch.Status != saga.StepCompensationFailed || ch.CompensationAttempts != 3 || !strings.Contains(ch.CompensationError, "refund api rejects") || ch.Error != "" {
		t.Errorf("charge %+v", ch)
	}
	// The command is dead-lettered after the park is recorded: wait for it.
	var dls []ops.DeadLetter
	sagatest.Poll(t, 20*time.Second, func() bool {
		var err error
		dls, err = e.op.DeadLetters(context.Background(), e.s.flow.Name())
		return err == nil && len(dls) > 0
	}, func() string { return "no dead letter" })
	if len(dls) != 1 || !strings.Contains(dls[0].Reason, "compensation of charge failed after 3 attempts") || !strings.Contains(dls[0].Subject, ".c2.") {
		t.Fatalf("dead letters %+v", dls)
	}
	if parked, _ := e.c.List(context.Background(), e.s.flow, saga.StatusCompensationFailed); len(parked) != 1 || parked[0].ID != "c2" {
		t.Errorf("List(compensation_failed) = %v", parked)
	}
	if err := e.op.RetryCompensation(context.Background(), e.s.flow.Name(), "nope"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("retry of a missing saga: %v", err)
	}
	refundWorks.Store(true)
	// The operator replays the dead-lettered command: the saga is parked,
	// so its compensations run again (as RetryCompensation does).
	if what, err := e.op.ReplayDeadLetter(context.Background(), dls[0].Sequence); err != nil || !strings.Contains(what, "compensates again") {
		t.Fatalf("replay of the parked command: %q %v", what, err)
	}
	st = e.await(t, "c2", saga.StatusCompensated)
	if _, err := e.op.ReplayDeadLetter(context.Background(), dls[0].Sequence); !errors.Is(err, ops.ErrNotReplayable) || !strings.Contains(err.Error(), "not parked") {
		t.Errorf("a second replay: %v", err)
	}
	if n, err := e.op.PurgeDeadLetters(context.Background(), time.Now().Add(-time.Hour)); n != 0 || err != nil {
		t.Errorf("purge of nothing that old: %d %v", n, err)
	}
	if n, err := e.op.PurgeDeadLetters(context.Background(), time.Now().Add(time.Second)); n != 1 || err != nil {
		t.Errorf("purge: %d %v", n, err)
	}
	if dls, err := e.op.DeadLetters(context.Background(), e.s.flow.Name()); len(dls) != 0 || err != nil {
		t.Errorf("after the purge: %v %v", dls, err)
	}
	if st.Epoch != 1 || st.Step("charge").Status != saga.StepCompensated {
		t.Errorf("after retry: %+v", st)
	}
	if n := e.l.count("c2", "charge", "compensation"); n != 1 {
		t.Errorf("refunded %d times", n)
	}
	if err := e.op.RetryCompensation(context.Background(), e.s.flow.Name(), "c2"); !errors.Is(err, ops.ErrNotParked) {
		t.Errorf("second retry: %v, want ErrNotParked", err)
	}
}

func TestDuplicatePublishRunsActionOnce(t *testing.T) {
	e := newEnv(t, 0, nil)
	e.start(t, "dup")
	e.await(t, "dup", saga.StatusCompleted)
	_, js := e.srv.Connect()
	stream, err := js.Stream(context.Background(), access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	subject := "choreo.log." + e.s.flow.Name() + ".dup.v1.charge.done"
	orig, err := stream.GetLastMsgForSubject(context.Background(), subject)
	if err != nil {
		t.Fatal(err)
	}
	// 1: the very same message again (same compare-and-set expectations).
	m := nats.NewMsg(subject)
	m.Header, m.Data = orig.Header, orig.Data
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Logf("republish refused: %v", err)
	}
	// 2: a copy stripped of its id and compare-and-set, as a careless
	// bridge would forward it: stored, but not by choreo.
	m = nats.NewMsg(subject)
	m.Header = nats.Header{}
	for k, v := range orig.Header {
		if !strings.HasPrefix(k, "Nats-") {
			m.Header[k] = v
		}
	}
	m.Data = orig.Data
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 10*time.Second, func() bool {
		dls, _ := e.op.DeadLetters(context.Background(), e.s.flow.Name())
		return len(dls) > 0
	}, func() string { return "the stripped copy was not dead-lettered" })
	// The saga's state still stands and nothing ran twice.
	st, err := e.c.Get(context.Background(), e.s.flow, "dup")
	if err != nil || st.Status != saga.StatusCompleted {
		t.Fatalf("state after duplicates: %v %v", st, err)
	}
	for _, step := range []string{"reserve", "invoice"} {
		if n := e.rec.Tries("dup", step+":action"); n != 1 {
			t.Errorf("%s ran %d times", step, n)
		}
	}
}

func TestRedeliveryAfterAckTimeoutRunsActionOnce(t *testing.T) {
	// The runner records charge's outcome, then hangs before the ack: after
	// its hold on the message (10s) it stops keeping it alive, and the
	// broker redelivers it as it would a dead process's.
	hung := make(chan struct{})
	var once sync.Once
	e := newEnv(t, 0, nil, saga.WithAckWait(300*time.Millisecond), saga.WithOnRecorded(func(st *saga.State, step string, phase saga.Phase) {
		if st.ID == "redeliver" && step == "charge" && phase == "done" {
			once.Do(func() { <-hung })
		}
	}))
	defer close(hung)
	e.start(t, "redeliver")
	e.await(t, "redeliver", saga.StatusCompleted)
	// The first delivery is still hung before its ack: the message can only
	// be acknowledged by its redelivery.
	_, js := e.srv.Connect()
	cons, err := js.Consumer(context.Background(), access.StreamName, e.s.flow.Name()+"_v1_charge_do")
	if err != nil {
		t.Fatal(err)
	}
	var info *jetstream.ConsumerInfo
	sagatest.Poll(t, 30*time.Second, func() bool {
		info, err = cons.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.AckFloor.Consumer >= 2
	}, func() string { return fmt.Sprintf("no redelivery was acknowledged: %+v %v", info, err) })
	if n := e.rec.Tries("redeliver", "charge:action"); n != 1 {
		t.Errorf("charge ran %d times after a redelivery", n)
	}
	if n := e.l.count("redeliver", "charge", "action"); n != 1 {
		t.Errorf("charged %d times", n)
	}
}

func TestSlowRecordingIsKeptAlive(t *testing.T) {
	// Recording an outcome that takes longer than the ack wait (a loaded
	// broker, a slow hook) must not let the broker redeliver the trigger:
	// the redelivery would find the step still running and run it again.
	var slow, slept atomic.Int32
	e := newEnv(t, 0, nil, saga.WithAckWait(300*time.Millisecond), saga.WithOnRecorded(func(st *saga.State, step string, phase saga.Phase) {
		if step == "charge" && phase == "done" {
			slow.Add(1)
			time.Sleep(time.Second) // over three ack waits before the ack
			slept.Add(1)
		}
	}))
	for i := range 3 {
		e.start(t, fmt.Sprintf("slowrec%d", i))
	}
	for i := range 3 {
		id := fmt.Sprintf("slowrec%d", i)
		e.await(t, id, saga.StatusCompleted)
		if n := e.rec.Tries(id, "charge:action"); n != 1 {
			t.Errorf("%s: charge ran %d times", id, n)
		}
	}
	_, js := e.srv.Connect()
	cons, err := js.Consumer(context.Background(), access.StreamName, e.s.flow.Name()+"_v1_charge_do")
	if err != nil {
		t.Fatal(err)
	}
	var info *jetstream.ConsumerInfo
	sagatest.Poll(t, 10*time.Second, func() bool {
		info, err = cons.Info(context.Background())
		return err == nil && slept.Load() == 3 && info.NumAckPending == 0
	}, func() string { return fmt.Sprintf("the slow recordings were not acknowledged: %+v %v", info, err) })
	if info.NumRedelivered != 0 || info.Delivered.Consumer != 3 {
		t.Errorf("the slow recordings were redelivered: %d delivered, %d redelivered", info.Delivered.Consumer, info.NumRedelivered)
	}
	if slow.Load() != 3 {
		t.Errorf("the hook ran %d times for 3 sagas", slow.Load())
	}
}

func TestTwoRunnersShareTheWork(t *testing.T) {
	e := &env{srv: sagatest.NewServer(t), l: newLedger()}
	e.c = e.srv.Client()
	e.s = newShop(t, 0, nil)
	recs := []*sagatest.Recorder{sagatest.NewRecorder(), sagatest.NewRecorder()}
	for _, rec := range recs {
		r, err := saga.NewRunner(e.srv.Client(), saga.WithConcurrency(4), saga.WithInterceptor(rec.Interceptor()))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.s.bind(r, e.l); err != nil {
			t.Fatal(err)
		}
		sagatest.Run(t, r)
	}
	const n = 60
	for i := range n {
		e.start(t, fmt.Sprintf("s%d", i))
	}
	for i := range n {
		e.await(t, fmt.Sprintf("s%d", i), saga.StatusCompleted)
	}
	calls := []int{0, 0}
	for i := range n {
		id := fmt.Sprintf("s%d", i)
		for _, step := range []string{"charge", "reserve", "invoice", "confirm", "notify"} {
			if got := recs[0].Tries(id, step+":action") + recs[1].Tries(id, step+":action"); got != 1 {
				t.Errorf("%s %s ran %d times across the runners", id, step, got)
			}
		}
		calls[0] += len(recs[0].Calls(id))
		calls[1] += len(recs[1].Calls(id))
	}
	if calls[0] == 0 || calls[1] == 0 {
		t.Errorf("work not shared: %v", calls)
	}
	t.Logf("calls per runner: %v", calls)
}

func TestRunnerReplacedMidSaga(t *testing.T) {
	e := &env{srv: sagatest.NewServer(t), l: newLedger(), rec: sagatest.NewRecorder()}
	e.c = e.srv.Client()
	e.s = newShop(t, 0, func(s *shop) { s.reserveOpts = []saga.StepOption{saga.WithRetry(fastRetries(5))} })
	entered := make(chan struct{})
	var once sync.Once
	e.l.on("m1", "reserve:action", func(ctx context.Context, attempt int) error {
		if attempt == 1 {
			once.Do(func() { close(entered) })
			<-ctx.Done() // the runner stops under it
			return ctx.Err()
		}
		return nil
	})
	stop := e.startRunner(t, saga.WithDrainTimeout(50*time.Millisecond))
	e.start(t, "m1")
	<-entered
	stop()
	st, err := e.c.Get(context.Background(), e.s.flow, "m1")
	if err != nil || st.Status != saga.StatusRunning {
		t.Fatalf("after stop: %v %v", st, err)
	}
	e.startRunner(t)
	e.await(t, "m1", saga.StatusCompleted)
	if n := e.l.count("m1", "reserve", "action"); n != 1 {
		t.Errorf("reserved %d times", n)
	}
	if n := e.l.count("m1", "charge", "action"); n != 1 {
		t.Errorf("charged %d times", n)
	}
}

func TestWatchSeesEveryChange(t *testing.T) {
	e := newEnv(t, 0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := e.c.Watch(ctx, e.s.flow)
	if err != nil {
		t.Fatal(err)
	}
	e.start(t, "w1")
	var seen []saga.Status
	timeout := time.After(20 * time.Second)
	for len(seen) == 0 || seen[len(seen)-1] != saga.StatusCompleted {
		select {
		case st := <-ch:
			if st.ID == "w1" {
				seen = append(seen, st.Status)
			}
		case <-timeout:
			t.Fatalf("watch saw %v", seen)
		}
	}
	if len(seen) != 6 || seen[0] != saga.StatusRunning {
		t.Errorf("watch saw %v", seen)
	}
	cancel()
	for range ch {
	}
}

func TestListByStatus(t *testing.T) {
	e := newEnv(t, 0, nil)
	e.l.on("bad", "charge:action", func(context.Context, int) error { return saga.Abortf("declined") })
	for _, id := range []string{"good1", "good2", "bad"} {
		e.start(t, id)
	}
	for _, id := range []string{"good1", "good2"} {
		e.await(t, id, saga.StatusCompleted)
	}
	e.await(t, "bad", saga.StatusCompensated)
	all, err := e.c.List(context.Background(), e.s.flow)
	if err != nil || len(all) != 3 {
		t.Fatalf("List = %v, %v", all, err)
	}
	done, _ := e.c.List(context.Background(), e.s.flow, saga.StatusCompleted)
	comp, _ := e.c.List(context.Background(), e.s.flow, saga.StatusCompensated)
	if len(done) != 2 || len(comp) != 1 || comp[0].ID != "bad" {
		t.Errorf("completed %v compensated %v", done, comp)
	}
}

func TestUnnamedPayloadTypes(t *testing.T) {
	srv := sagatest.NewServer(t)
	c := srv.Client()
	first := saga.NewStep[[]string, map[string]int]("count")
	second := saga.NewStep[map[string]int, []int]("list")
	f := saga.MustDefine[[]string]("unnamed", 1, first, second)
	r, _ := saga.NewRunner(c)
	_ = saga.Handle(r, first, func(_ context.Context, in []string) (map[string]int, error) {
		return map[string]int{"n": len(in)}, nil
	}, nil)
	_ = saga.Handle(r, second, func(_ context.Context, in map[string]int) ([]int, error) { return []int{in["n"]}, nil }, nil)
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), c, f, "u1", []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, c, f, "u1", 10*time.Second, saga.StatusCompleted)
	evs, _ := c.Timeline(context.Background(), f, "u1")
	if string(evs[len(evs)-1].Data) != "[2]" || evs[0].Type != "[]string" {
		t.Errorf("events %+v", evs)
	}
}

func TestOnEndSeesEveryEndOnce(t *testing.T) {
	e := &env{srv: sagatest.NewServer(t), l: newLedger(), rec: sagatest.NewRecorder()}
	e.c = e.srv.Client()
	e.s = newShop(t, 0, nil)
	var mu sync.Mutex
	ends := map[string][]saga.Status{}
	for range 2 { // two instances share the end consumer
		r, _ := saga.NewRunner(e.c)
		if err := e.s.bind(r, e.l); err != nil {
			t.Fatal(err)
		}
		if err := r.OnEnd(e.s.flow, "orders", func(_ context.Context, st *saga.State) error {
			mu.Lock()
			defer mu.Unlock()
			ends[st.ID] = append(ends[st.ID], st.Status)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sagatest.Run(t, r)
	}
	e.l.on("no", "charge:action", func(context.Context, int) error { return saga.Abortf("declined") })
	e.start(t, "yes")
	e.start(t, "no")
	sagatest.Poll(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ends["yes"]) == 1 && len(ends["no"]) == 1
	}, func() string { return fmt.Sprint(ends) })
	if ends["yes"][0] != saga.StatusCompleted || ends["no"][0] != saga.StatusCompensated {
		t.Errorf("ends %v", ends)
	}
}

func TestValidatorRejectsInvalidInput(t *testing.T) {
	var mu sync.Mutex
	checked := map[string]bool{}
	e := newEnv(t, 0, nil, saga.WithValidator(func(eventType string, data []byte) error {
		mu.Lock()
		checked[eventType] = true
		mu.Unlock()
		if eventType == "Order" && strings.Contains(string(data), `"Amount":-1`) {
			return errors.New("/Amount: must be >= 0")
		}
		return nil
	}))
	if err := saga.Start(context.Background(), e.c, e.s.flow, "neg", Order{ID: "neg", Amount: -1}); err != nil {
		t.Fatal(err)
	}
	st := e.await(t, "neg", saga.StatusCompensated)
	if ch := st.Step("charge"); ch.Status != saga.StepFailed || !strings.Contains(ch.Error, "schema-invalid Order: /Amount") {
		t.Errorf("charge %+v", ch)
	}
	if e.l.count("neg", "charge", "action") != 0 {
		t.Error("the action ran on an invalid event")
	}
	dls, _ := e.op.DeadLetters(context.Background(), e.s.flow.Name())
	if len(dls) != 1 || !strings.Contains(dls[0].Reason, "schema-invalid") {
		t.Errorf("dead letters %+v", dls)
	}
	e.start(t, "fine")
	e.await(t, "fine", saga.StatusCompleted)
	// Each input is checked as what it is: after the group, confirm takes
	// the flow's input (Order), not the last member's result.
	mu.Lock()
	defer mu.Unlock()
	for _, typ := range []string{"Order", "Charged", "Confirmed"} {
		if !checked[typ] {
			t.Errorf("no input checked as %s: %v", typ, checked)
		}
	}
	for _, typ := range []string{"Reserved", "Invoiced"} {
		if checked[typ] {
			t.Errorf("an input was checked as %s, the result of a group member", typ)
		}
	}
}

func TestUnsafeStreamIsRefused(t *testing.T) {
	srv := sagatest.NewServer(t)
	_, js := srv.Connect()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: access.StreamName, Subjects: []string{"choreo.log.>", "choreo.cmd.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	_, err := saga.New(ctx, js)
	if !errors.Is(err, saga.ErrUnsafeConfig) || !strings.Contains(err.Error(), "memory storage") {
		t.Fatalf("New over a memory stream = %v, want ErrUnsafeConfig", err)
	}
	if _, err := saga.New(ctx, js, access.WithMemoryStorage()); err != nil {
		t.Errorf("asked for memory storage: %v", err)
	}
}

// Reads leave no consumer behind: a stream takes 1,000 consumers by
// default, and a timeline per request used to keep one for five minutes
// each (found by the soak: the checker's 1,500 timelines hit the limit).
func TestReadsLeaveNoConsumerBehind(t *testing.T) {
	e := newEnv(t, 0, nil)
	e.start(t, "r1")
	e.await(t, "r1", saga.StatusCompleted)
	_, js := e.srv.Connect()
	ctx := context.Background()
	count := func() int {
		s, err := js.Stream(ctx, access.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}
	before := count()
	for range 20 {
		if _, err := e.c.Timeline(ctx, e.s.flow, "r1"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.List(ctx, e.s.flow); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	if _, err := e.c.Watch(wctx, e.s.flow); err != nil {
		t.Fatal(err)
	}
	cancel()
	sagatest.Poll(t, 10*time.Second, func() bool { return count() <= before },
		func() string {
			return fmt.Sprintf("%d consumers on the stream after the reads, %d before", count(), before)
		})
}

// The step after a Parallel group takes the flow's input, not the result
// of whichever member finished last (which is what triggers it).
func TestStepAfterGroupTakesFlowInput(t *testing.T) {
	srv := sagatest.NewServer(t)
	c := srv.Client()
	type In struct{ Order string }
	type Part struct{ Part string }
	b := saga.NewStep[In, Part]("b")
	d := saga.NewStep[In, Part]("d")
	after := saga.NewStep[In, In]("after")
	f := saga.MustDefine[In]("grouped", 1, saga.Parallel(b, d), after)
	r, _ := saga.NewRunner(c)
	part := func(_ context.Context, in In) (Part, error) { return Part{Part: "p-" + in.Order}, nil }
	var got atomic.Value
	_ = errors.Join(
		saga.Handle(r, b, part, nil),
		saga.Handle(r, d, part, nil),
		saga.Handle(r, after, func(_ context.Context, in In) (In, error) { got.Store(in); return in, nil }, nil),
	)
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), c, f, "g1", In{Order: "o-7"}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, c, f, "g1", 10*time.Second, saga.StatusCompleted)
	if in, _ := got.Load().(In); in.Order != "o-7" {
		t.Errorf("the step after the group got %+v, want the flow's input", got.Load())
	}
}
