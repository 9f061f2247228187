package main

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// A saga whose step waits on the outside world: sagas ls says on whom,
// sagas show until when, and the completion token is not printed (it is
// no secret, but no operator needs it).
func TestSagasWaiting(t *testing.T) {
	srv := sagatest.NewServer(t)
	c := srv.Client()
	ask := saga.NewStep[Trip, Ticket]("confirm", saga.Owner("hotel"), saga.WaitsFor("guest", 48*time.Hour))
	f := saga.MustDefine[Trip]("stay", 1, ask)
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, ask, nil, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	ctx := context.Background()
	if err := saga.Start(ctx, c, f, "s1", Trip{}); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 20*time.Second, func() bool {
		st, err := c.Get(ctx, f, "s1")
		return err == nil && st.Step("confirm").Status == saga.StepWaiting
	}, func() string { return "the step never waited" })
	code, out, errs := runCLI(t, srv.ClientURL(), "sagas", "ls", "--flow", "stay")
	if code != 0 || !regexp.MustCompile(`stay\s+s1\s+v1\s+running\s+\S+\s+confirm:guest\s+-`).MatchString(out) {
		t.Errorf("sagas ls: %d %q\n%s", code, errs, out)
	}
	code, out, errs = runCLI(t, srv.ClientURL(), "sagas", "show", "stay", "s1")
	if code != 0 || !regexp.MustCompile(`confirm\s.*waiting.*waiting on guest until \d{4}-\d\d-\d\dT`).MatchString(out) {
		t.Errorf("sagas show: %d %q\n%s", code, errs, out)
	}
	if regexp.MustCompile(`stay\.v1\.s1\.confirm\.1`).MatchString(out) {
		t.Errorf("sagas show prints the completion token:\n%s", out)
	}
}
