package sagatest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
)

type Req struct{ N int }

func TestBrokerRestartMidSaga(t *testing.T) {
	srv := sagatest.NewServer(t, sagatest.SyncAlways())
	c := srv.Client()
	first := saga.NewStep[Req, Req]("first")
	second := saga.NewStep[Req, Req]("second", saga.WithRetry(saga.RetryPolicy{MaxAttempts: 100, InitialBackoff: 10 * time.Millisecond}))
	f := saga.MustDefine[Req]("restart", 1, first, second)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	rec := sagatest.NewRecorder()
	r, _ := saga.NewRunner(c, saga.WithInterceptor(rec.Interceptor()))
	_ = saga.Handle(r, first, func(ctx context.Context, in Req) (Req, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return Req{N: in.N + 1}, nil
	}, func(context.Context, Req, Req) error { return nil })
	_ = saga.Handle(r, second, func(ctx context.Context, in Req) (Req, error) { return Req{N: in.N * 10}, nil }, nil)
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), c, f, "r1", Req{N: 1}); err != nil {
		t.Fatal(err)
	}
	<-entered
	srv.Restart() // the broker goes down while "first" runs, and comes back
	close(release)
	st := sagatest.AwaitStatus(t, c, f, "r1", 30*time.Second, saga.StatusCompleted)
	if st.Step("second").Status != saga.StepCompleted {
		t.Errorf("second is %s", st.Step("second").Status)
	}
	sagatest.AssertTimeline(t, c, f, "r1", "_saga:start", "first:done", "second:done")
	if got := rec.Calls("r1"); len(got) < 2 || got[len(got)-1] != "second:action" {
		t.Errorf("calls %q", got)
	}
}

// A compensatable step bound with a nil compensation has nothing to undo:
// the sweep counts it compensated when the log says so, though no handler
// runs, and still finds a flow whose backtracking is wrong.
func TestSweepNilCompensation(t *testing.T) {
	hold := saga.NewStep[Req, Req]("hold")
	note := saga.NewStep[Req, Req]("note") // nothing to undo
	ship := saga.NewStep[Req, Req]("ship", saga.Pivot())
	f := saga.MustDefine[Req]("nilundo", 1, hold, note, ship)
	id := func(_ context.Context, r Req) (Req, error) { return r, nil }
	sagatest.RunSweep(t, sagatest.Sweep[Req]{Flow: f, Input: Req{N: 1}, Bind: func(r *saga.Runner) error {
		return errors.Join(
			saga.Handle(r, hold, id, func(context.Context, Req, Req) error { return nil }),
			saga.Handle(r, note, id, nil),
			saga.Handle(r, ship, id, nil),
		)
	}})

	// A compensation that cannot succeed parks the saga: the sweep reports
	// it for the run that needed it.
	hold2 := saga.NewStep[Req, Req]("hold", saga.WithCompensationRetry(saga.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond}))
	ship2 := saga.NewStep[Req, Req]("ship", saga.Pivot())
	f2 := saga.MustDefine[Req]("broken", 1, hold2, ship2)
	runs, err := sagatest.Sweep[Req]{Flow: f2, Input: Req{N: 1}, Bind: func(r *saga.Runner) error {
		return errors.Join(
			saga.Handle(r, hold2, id, func(context.Context, Req, Req) error { return errors.New("the hotel line is dead") }),
			saga.Handle(r, ship2, id, nil),
		)
	}}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || len(runs[0].Problems) != 0 || len(runs[1].Problems) != 1 {
		t.Fatalf("sweep runs %+v; want the parked saga reported when ship aborts", runs)
	}
	for _, want := range []string{"with ship aborting, the saga ended compensation_failed, want compensated", `expected undone ["hold"], undone []`,
		`step hold is compensation_failed after 2 compensation attempt(s): compensation error "compensation of hold failed after 2 attempts: the hotel line is dead"`} {
		if !strings.Contains(runs[1].Problems[0], want) {
			t.Errorf("the sweep says %q; want it to say %q", runs[1].Problems[0], want)
		}
	}
}

// A sweep's saga that does not end in time is reported by the step that
// aborted, what was to be undone, what was, and each unfinished step with
// its error: not as a struct dump (issue 20).
func TestSweepSaysWhereAStuckSagaStands(t *testing.T) {
	hold := saga.NewStep[Req, Req]("hold", saga.WithCompensationRetry(saga.RetryPolicy{MaxAttempts: 1000, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}))
	ship := saga.NewStep[Req, Req]("ship", saga.Pivot())
	f := saga.MustDefine[Req]("stuck-sweep", 1, hold, ship)
	id := func(_ context.Context, r Req) (Req, error) { return r, nil }
	runs, err := sagatest.Sweep[Req]{Flow: f, Input: Req{N: 1}, Timeout: 2 * time.Second, Bind: func(r *saga.Runner) error {
		return errors.Join(
			saga.Handle(r, hold, id, func(context.Context, Req, Req) error { return errors.New("the hotel line is dead") }),
			saga.Handle(r, ship, id, nil),
		)
	}}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || len(runs[1].Problems) != 1 {
		t.Fatalf("sweep runs %+v; want the stuck saga reported when ship aborts", runs)
	}
	got := runs[1].Problems[0]
	for _, want := range []string{"with ship aborting, the saga is still compensating after 2s", `expected undone ["hold"], undone []`,
		`step hold is compensating after`, `compensation error "the hotel line is dead"`, `step ship is failed: "sweep: ship aborts"`} {
		if !strings.Contains(got, want) {
			t.Errorf("the sweep says %q; want it to say %q", got, want)
		}
	}
	if strings.Contains(got, "{Name:") || strings.Contains(got, "want []") {
		t.Errorf("the sweep dumps a struct: %s", got)
	}
}
