package saga_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// A step whose runner stopped is reported unserved by Diagnose once its
// consumer has been idle longer than DiagnoseOptions.Idle, not before: a
// runner restarting is not a finding.
func TestDiagnoseUnservedAfterIdle(t *testing.T) {
	type In struct{ N int }
	first := saga.NewStep[In, In]("first", saga.Owner("a"))
	second := saga.NewStep[In, In]("second", saga.Owner("b"))
	flow := saga.MustDefine[In]("idle", 1, first, second)
	srv := sagatest.NewServer(t)
	c := srv.Client()
	pass := func(_ context.Context, in In) (In, error) { return in, nil }

	ra, err := saga.NewRunner(srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(ra, first, pass, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, ra)
	rb, err := saga.NewRunner(srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(rb, second, pass, nil); err != nil {
		t.Fatal(err)
	}
	stopB := sagatest.Run(t, rb)
	ctx := context.Background()
	if err := saga.Start(ctx, c, flow, "one", In{1}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, c, flow, "one", 20*time.Second, saga.StatusCompleted)
	// second's consumer delivers nothing for a while, its runner attached
	// (issue 20: the doctor blamed this time on the runner being gone).
	quiet := time.Now()
	sagatest.Poll(t, 10*time.Second, func() bool { return time.Since(quiet) > 3*time.Second }, func() string { return "" })
	stopB() // second's consumer stays, with no runner
	stopped := time.Now()
	if err := saga.Start(ctx, c, flow, "two", In{2}); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 20*time.Second, func() bool {
		st, err := c.Get(ctx, flow, "two")
		return err == nil && st.Step("second").Status == saga.StepRunning
	}, func() string { return "saga two does not reach second" })

	var finding ops.Finding
	unserved := func(idle time.Duration) string {
		found, err := srv.Ops().Diagnose(ctx, ops.DiagnoseOptions{Idle: idle})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range found {
			if f.Kind == "unserved" {
				finding = f
				return f.What
			}
		}
		return ""
	}
	if what := unserved(time.Hour); what != "" {
		t.Errorf("reported within the idle threshold: %s", what)
	}
	var what string
	sagatest.Poll(t, 20*time.Second, func() bool {
		what = unserved(time.Millisecond)
		return what != ""
	}, func() string { return "second is never reported unserved" })
	if !strings.Contains(what, "wait at step second, the oldest for") || !strings.Contains(what, "no runner of v1 is attached to it now; its consumer last delivered a message") {
		t.Errorf("finding: %s", what)
	}
	// The time it gives for the wait is the sagas', at most since the
	// runner stopped, not the consumer's quiet time before.
	if finding.Waiting <= 0 || finding.Waiting > time.Since(stopped) {
		t.Errorf("the oldest saga waited %v, but the runner stopped %v ago: %s", finding.Waiting, time.Since(stopped), what)
	}
}
