package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

var bulkIDs = regexp.MustCompile(`\bb[0-9a-z]{8,9}[0-9a-f]{6}\b`)

// The operator's pause and bulk acts, through the command line: a step
// paused and resumed, a saga paused, a bulk cancel with its dry run, and
// the bulk acts listed.
func TestPauseAndBulkCommands(t *testing.T) {
	url, c, v1, _, _ := system(t)
	ctx := context.Background()
	for _, id := range []string{"a1", "a2", "a3"} {
		if err := saga.Start(ctx, c, v1, id, Trip{Who: id}); err != nil {
			t.Fatal(err)
		}
		sagatest.Poll(t, 20*time.Second, func() bool {
			st, err := c.Get(ctx, v1, id)
			return err == nil && st.Step("hotel").Status == saga.StepRunning
		}, func() string { return id + " does not reach hotel" })
	}

	code, out, errs := runCLI(t, url, "flows", "pause", "trip", "1", "hotel", "--reason", "hotel API down")
	if code != 0 {
		t.Fatalf("flows pause: %d %s", code, errs)
	}
	golden(t, "flows-pause.golden", out)
	code, out, errs = runCLI(t, url, "flows", "paused")
	if code != 0 {
		t.Fatalf("flows paused: %d %s", code, errs)
	}
	golden(t, "flows-paused.golden", out)
	code, out, _ = runCLI(t, url, "flows", "resume", "trip", "1", "hotel")
	if code != 0 || !strings.Contains(out, "resumes") {
		t.Errorf("flows resume: %d %s", code, out)
	}
	code, _, errs = runCLI(t, url, "flows", "resume", "trip", "1", "hotel")
	if code != 1 || !strings.Contains(errs, "not paused") {
		t.Errorf("a second resume: %d %s", code, errs)
	}

	code, out, errs = runCLI(t, url, "sagas", "pause", "trip", "a1", "--reason", "customer called")
	if code != 0 || !strings.Contains(out, "is paused") {
		t.Fatalf("sagas pause: %d %s %s", code, out, errs)
	}
	code, out, _ = runCLI(t, url, "sagas", "show", "trip", "a1")
	if code != 0 || !strings.Contains(out, "paused: by admin at") || !strings.Contains(out, "customer called") || !strings.Contains(out, "_saga:paused") {
		t.Errorf("sagas show of a paused saga: %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, url, "sagas", "resume", "trip", "a1", "--reason", "sorted")
	if code != 0 || !strings.Contains(out, "resumes") {
		t.Errorf("sagas resume: %d %s", code, out)
	}

	code, out, errs = runCLI(t, url, "sagas", "cancel", "--all", "--flow", "trip", "--status", "running", "--step", "hotel", "--reason", "hotel chain gone", "--dry-run")
	if code != 0 {
		t.Fatalf("bulk dry run: %d %s", code, errs)
	}
	golden(t, "bulk-dry-run.golden", out)
	code, out, errs = runCLI(t, url, "sagas", "cancel", "--all", "--flow", "trip", "--status", "running", "--reason", "hotel chain gone", "--rate", "100/s")
	if code != 0 {
		t.Fatalf("bulk cancel: %d %s", code, errs)
	}
	id := bulkIDs.FindString(out)
	golden(t, "bulk-cancel.golden", bulkIDs.ReplaceAllString(out, "BULKID"))
	code, out, _ = runCLI(t, url, "bulk", "ls")
	if code != 0 || !strings.Contains(out, id) {
		t.Errorf("bulk ls: %d %s", code, out)
	}
	golden(t, "bulk-ls.golden", bulkIDs.ReplaceAllString(out, "BULKID"))
	var rec ops.BulkRecord
	code, out, _ = runCLI(t, url, "--json", "bulk", "show", id)
	if code != 0 || json.Unmarshal([]byte(out), &rec) != nil || rec.Done != 3 || rec.State != ops.BulkFinished {
		t.Errorf("bulk show --json: %d %s", code, out)
	}
	// Twice: nothing left to act on.
	code, out, _ = runCLI(t, url, "sagas", "cancel", "--all", "--flow", "trip", "--status", "running", "--reason", "hotel chain gone")
	if code != 0 || !strings.Contains(out, "matched 0") {
		t.Errorf("bulk cancel again: %d %s", code, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sagas", "cancel", "--all", "--flow", "trip"}, "give --reason"},
		{[]string{"sagas", "cancel", "--all", "--reason", "x", "--rate", "fast"}, `--rate "fast"`},
		{[]string{"sagas", "retry", "--all", "--reason", "x", "--status", "lost"}, `--status "lost"`},
		{[]string{"sagas", "cancel", "--all", "--reason", "x", "--where", "total"}, `--where "total"`},
		{[]string{"sagas", "cancel", "trip", "a1", "a2", "--all", "--reason", "x"}, "no FLOW ID with --all"},
		{[]string{"flows", "pause", "trip", "1"}, "give --reason"},
		{[]string{"flows", "pause", "trip", "one", "--reason", "x"}, `version "one"`},
		{[]string{"flows", "pause", "trip", "1", "--reason", "x", "--until", "soon"}, `--until "soon"`},
		{[]string{"sagas", "pause", "trip", "a1"}, "give --reason"},
		{[]string{"bulk", "show"}, "want ID"},
	} {
		code, _, errs := runCLI(t, url, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("%v: %d %q; want 2 and one line with %q", tc.args, code, errs, tc.want)
		}
	}
}
