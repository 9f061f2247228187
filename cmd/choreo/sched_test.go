package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
)

// A saga started for later is listed and shown as scheduled, with when it
// begins; cancelled before, it ends compensated.
func TestSagasScheduled(t *testing.T) {
	url, c, v1, _, _ := system(t)
	ctx := context.Background()
	if err := saga.Start(ctx, c, v1, "later", Trip{Who: "later"}, saga.After(time.Hour)); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, url, "sagas", "ls", "--flow", "trip", "--status", "scheduled")
	if code != 0 || !regexp.MustCompile(`trip\s+later\s+v1\s+scheduled\s+\S+\s+-\s+begins \d{4}-`).MatchString(out) {
		t.Errorf("sagas ls --status scheduled: %d %q\n%s", code, errs, out)
	}
	if code, out, _ = runCLI(t, url, "sagas", "ls", "--flow", "trip", "--status", "running"); code != 0 || strings.Contains(out, "later") {
		t.Errorf("sagas ls --status running lists the scheduled saga: %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, url, "sagas", "show", "trip", "later")
	if code != 0 {
		t.Fatalf("sagas show: %d", code)
	}
	golden(t, "sagas-show-scheduled.golden", out)
	code, out, errs = runCLI(t, url, "sagas", "cancel", "trip", "later", "--reason", "plans changed")
	if code != 0 || !strings.Contains(out, "ends compensated") {
		t.Errorf("sagas cancel of a scheduled saga: %d %q %s", code, errs, out)
	}
	st, err := c.Get(ctx, v1, "later")
	if err != nil || st.Status != saga.StatusCompensated || st.Reason != "cancelled: plans changed" || st.Step("book").Status != saga.StepPending {
		t.Errorf("cancelled scheduled saga: %+v %v", st, err)
	}
}
