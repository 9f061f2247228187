package sagatest_test

import (
	"context"
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
	f := saga.MustDefine("restart", 1, first, second)
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
	if err := c.Start(context.Background(), f, "r1", Req{N: 1}); err != nil {
		t.Fatal(err)
	}
	<-entered
	srv.Restart() // the broker goes down while "first" runs, and comes back
	close(release)
	st := sagatest.AwaitStatus(t, c, "restart", "r1", 30*time.Second, saga.StatusCompleted)
	if st.Step("second").Status != saga.StepCompleted {
		t.Errorf("second is %s", st.Step("second").Status)
	}
	sagatest.AssertTimeline(t, c, "restart", "r1", "_saga:start", "first:done", "second:done")
	if got := rec.Calls("r1"); len(got) < 2 || got[len(got)-1] != "second:action" {
		t.Errorf("calls %q", got)
	}
}
