package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// count counts the calls of one saga's step phase, e.g. "v1 hotel:action".
func (tr *trip) count(id, call string) int {
	n := 0
	for _, c := range tr.callsOf(id) {
		if c == call {
			n++
		}
	}
	return n
}

// A step paused broker-side stays paused while its runners are replaced:
// its triggers wait in the broker, no attempt is spent; on resume each
// saga finishes, its step run exactly once.
func TestPauseStepAcrossRunnerRestart(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newTrip(t)
	ctx := context.Background()
	op := srv.Ops()
	c1 := srv.Client()
	stop := tr.runner(t, c1, "book", "hotel", "pay")
	if err := op.PauseStep(ctx, tr.name, 1, "hotel", "", time.Time{}); !errors.Is(err, saga.ErrInvalidOption) {
		t.Fatalf("a pause without a reason: %v, want ErrInvalidOption", err)
	}
	if err := op.PauseStep(ctx, tr.name, 1, "hotel", "hotel API down", time.Time{}); err != nil {
		t.Fatal(err)
	}
	ids := []string{"p1", "p2", "p3", "p4", "p5"}
	for _, id := range ids {
		if err := saga.Start(ctx, c1, tr.v1, id, Trip{Who: id}); err != nil {
			t.Fatal(err)
		}
	}
	atHotel := func(c *saga.Client, id string) bool {
		st, err := c.Get(ctx, tr.v1, id)
		return err == nil && st.Step("book").Status == saga.StepCompleted && st.Step("hotel").Status == saga.StepRunning
	}
	for _, id := range ids {
		sagatest.Poll(t, 30*time.Second, func() bool { return atHotel(c1, id) }, func() string { return id + " never reached hotel" })
	}

	// The runners go and others come (a rolling restart): the pause stays.
	stop()
	c2 := srv.Client()
	tr.runner(t, c2, "book", "hotel", "pay")
	// The new runner works: a saga started now reaches the paused step too.
	if err := saga.Start(ctx, c2, tr.v1, "p6", Trip{Who: "p6"}); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, "p6")
	sagatest.Poll(t, 30*time.Second, func() bool { return atHotel(c2, "p6") }, func() string { return "p6 never reached hotel" })
	st, err := c2.Get(ctx, tr.v1, "p6")
	if err != nil {
		t.Fatal(err)
	}
	if w := st.Step("hotel").Waiting; !strings.Contains(w, "paused") || !strings.Contains(w, "hotel API down") {
		t.Errorf("Get says of the paused step %q; want it paused, with why", w)
	}
	for _, id := range ids {
		if n := tr.count(id, "v1 hotel:action"); n != 0 {
			t.Fatalf("saga %s: hotel ran %d times while paused", id, n)
		}
	}
	pauses, err := op.Pauses(ctx, tr.name)
	if err != nil || len(pauses) != 1 || pauses[0].Step != "hotel" || pauses[0].Reason != "hotel API down" || pauses[0].By == "" {
		t.Fatalf("Pauses = %+v, %v; want hotel's, with who and why", pauses, err)
	}
	findings, err := op.Diagnose(ctx, ops.DiagnoseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(findings, func(f ops.Finding) bool {
		return f.Kind == "paused" && strings.Contains(f.What, "step hotel") && strings.Contains(f.What, "hotel API down")
	}) {
		t.Errorf("doctor does not report the pause: %+v", findings)
	}

	if err := op.ResumeStep(ctx, tr.name, 1, "hotel"); err != nil {
		t.Fatal(err)
	}
	if err := op.ResumeStep(ctx, tr.name, 1, "hotel"); !errors.Is(err, ops.ErrNotPaused) {
		t.Errorf("a second resume: %v, want ErrNotPaused", err)
	}
	for _, id := range ids {
		st := sagatest.AwaitStatus(t, c2, tr.v1, id, 30*time.Second, saga.StatusCompleted)
		if a := st.Step("hotel").Attempts; a > 1 {
			t.Errorf("saga %s: hotel took %d attempts; the pause must spend none", id, a)
		}
		if n := tr.count(id, "v1 hotel:action"); n != 1 {
			t.Errorf("saga %s: hotel ran %d times, want once", id, n)
		}
	}
}

// A paused version pauses every step of it; pausing a flow needs a
// reason and a good name.
func TestPauseVersion(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newTrip(t)
	ctx := context.Background()
	op := srv.Ops()
	c := srv.Client()
	tr.runner(t, c, "book", "hotel", "pay")
	if err := op.PauseStep(ctx, "bad name", 1, "", "x", time.Time{}); !errors.Is(err, saga.ErrInvalidFlow) {
		t.Errorf("bad flow name: %v", err)
	}
	if err := op.PauseStep(ctx, tr.name, 1, "", "maintenance", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := saga.Start(ctx, c, tr.v1, "v", Trip{Who: "v"}); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 30*time.Second, func() bool {
		st, err := c.Get(ctx, tr.v1, "v")
		return err == nil && strings.Contains(st.Step("book").Waiting, "maintenance")
	}, func() string { st, err := c.Get(ctx, tr.v1, "v"); return fmt.Sprintf("%+v %v", st, err) })
	if n := tr.count("v", "v1 book:action"); n != 0 {
		t.Fatalf("book ran %d times while its version is paused", n)
	}
	if err := op.ResumeStep(ctx, tr.name, 1, ""); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, c, tr.v1, "v", 30*time.Second, saga.StatusCompleted)
}

// One saga paused: the step under way finishes, the next is held (not
// run, no attempt spent), Get says who paused it and why; the resume runs
// the held step once, and the log keeps every act with its audit.
func TestPauseSagaHoldsItsNextStep(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newTrip(t)
	ctx := context.Background()
	op := srv.Ops()
	c := srv.Client()
	tr.runner(t, c, "book", "hotel", "pay")
	release := tr.holdStep("s1", "book")
	if err := saga.Start(ctx, c, tr.v1, "s1", Trip{Who: "s1"}); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 30*time.Second, func() bool { return tr.count("s1", "v1 book:action") == 1 }, func() string { return "book never ran" })
	if err := op.PauseSaga(ctx, tr.name, "s1", "customer called"); err != nil {
		t.Fatal(err)
	}
	if err := op.PauseSaga(ctx, tr.name, "s1", "again"); err != nil {
		t.Errorf("pausing a paused saga: %v, want nil", err)
	}
	release()
	var st *saga.State
	sagatest.Poll(t, 30*time.Second, func() bool {
		var err error
		st, err = c.Get(ctx, tr.v1, "s1")
		return err == nil && st.Step("hotel").Held
	}, func() string { return fmt.Sprintf("hotel not held: %+v", st) })
	if st.Paused == nil || st.Paused.Reason != "customer called" || st.Paused.By == "" || st.Status != saga.StatusRunning {
		t.Errorf("Get of a paused saga: %+v", st)
	}
	if w := st.Step("hotel").Waiting; !strings.Contains(w, "paused by") || !strings.Contains(w, "customer called") {
		t.Errorf("the held step says %q", w)
	}
	if n := tr.count("s1", "v1 hotel:action"); n != 0 || st.Step("hotel").Attempts != 0 {
		t.Fatalf("hotel ran %d times (%d attempts) while the saga is paused", n, st.Step("hotel").Attempts)
	}
	if err := op.ResumeSaga(ctx, tr.name, "s1", "customer confirmed"); err != nil {
		t.Fatal(err)
	}
	st = sagatest.AwaitStatus(t, c, tr.v1, "s1", 30*time.Second, saga.StatusCompleted)
	if n := tr.count("s1", "v1 hotel:action"); n != 1 {
		t.Errorf("hotel ran %d times, want once", n)
	}
	if err := op.ResumeSaga(ctx, tr.name, "s1", "x"); !errors.Is(err, ops.ErrNotPaused) {
		t.Errorf("resuming an ended saga: %v, want ErrNotPaused", err)
	}
	events, err := c.Timeline(ctx, tr.v1, "s1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.String())
		if e.Phase == saga.PhasePaused || e.Phase == saga.PhaseUnpaused {
			var a ops.Audit
			if json.Unmarshal(e.Data, &a) != nil || a.By == "" || a.At.IsZero() || a.Reason == "" {
				t.Errorf("event %s has no audit: %s", e, e.Data)
			}
		}
	}
	want := []string{"_saga:start", "_saga:paused", "book:done", "hotel:held", "_saga:unpaused", "hotel:done", "pay:done"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("timeline %v, want %v", got, want)
	}
}

// A paused saga cancelled compensates: its held step never ran, so only
// the steps before it are compensated.
func TestPausedSagaCancelled(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newTrip(t)
	ctx := context.Background()
	op := srv.Ops()
	c := srv.Client()
	tr.runner(t, c, "book", "hotel", "pay")
	if err := op.PauseSaga(ctx, tr.name, "nobody", "x"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("pause of an unknown saga: %v", err)
	}
	release := tr.holdStep("c1", "book")
	if err := saga.Start(ctx, c, tr.v1, "c1", Trip{Who: "c1"}); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 30*time.Second, func() bool { return tr.count("c1", "v1 book:action") == 1 }, func() string { return "book never ran" })
	if err := op.PauseSaga(ctx, tr.name, "c1", "fraud check"); err != nil {
		t.Fatal(err)
	}
	release()
	sagatest.Poll(t, 30*time.Second, func() bool {
		st, err := c.Get(ctx, tr.v1, "c1")
		return err == nil && st.Step("hotel").Held
	}, func() string { return "hotel not held" })
	if err := op.Cancel(ctx, tr.name, "c1", "fraud"); err != nil {
		t.Fatal(err)
	}
	st := sagatest.AwaitStatus(t, c, tr.v1, "c1", 30*time.Second, saga.StatusCompensated)
	if st.Step("hotel").Status != saga.StepSkipped || st.Paused != nil {
		t.Errorf("after the cancel: hotel %s, paused %+v; want skipped, not paused", st.Step("hotel").Status, st.Paused)
	}
	if n := tr.count("c1", "v1 hotel:action"); n != 0 {
		t.Errorf("hotel ran %d times", n)
	}
	if n := tr.count("c1", "v1 book:compensation"); n != 1 {
		t.Errorf("book compensated %d times, want once", n)
	}
}

// Only the admin, or an identity given access.Operator, may pause: a
// service's identity may neither pause a consumer nor write a pause.
func TestPausePermissions(t *testing.T) {
	charge := saga.NewStep[Ticket, Ticket]("charge", saga.Owner("payment"))
	confirm := saga.NewStep[Ticket, Ticket]("confirm", saga.Owner("order"), saga.Pivot())
	f := saga.MustDefine[Ticket]("shop", 1, charge, confirm, saga.StartedBy("order"))
	perms, err := access.Permissions(f)
	if err != nil {
		t.Fatal(err)
	}
	oper, err := access.Operator("oncall", f)
	if err != nil {
		t.Fatal(err)
	}
	perms["oncall"] = oper
	for _, tc := range []struct {
		who, subject string
		want         bool
	}{
		{"payment", "$JS.API.CONSUMER.PAUSE.CHOREO.shop_v1_charge_do", false},
		{"payment", "$KV.CHOREO_FLOWS.pause.shop.v1.charge", false},
		{"payment", "$KV.CHOREO_FLOWS.pause.shop.v1", false},
		{"payment", "choreo.log.shop.s1.v1._saga.paused", false},
		{"payment", "choreo.log.shop.s1.v1._saga.unpaused", false},
		{"payment", "choreo.log.shop.s1.v1.charge.held", true}, // its own step's hold
		{"order", "choreo.log.shop.s1.v1._saga.paused", false},
		{"order", "$KV.CHOREO_FLOWS.bulk.b1", false},
		{"oncall", "$JS.API.CONSUMER.PAUSE.CHOREO.shop_v1_charge_do", true},
		{"oncall", "$JS.API.CONSUMER.PAUSE.CHOREO.other_v1_charge_do", false},
		{"oncall", "$JS.API.CONSUMER.DELETE.CHOREO.shop_v1_charge_do", false},
		{"oncall", "$KV.CHOREO_FLOWS.pause.shop.v1.charge", true},
		{"oncall", "$KV.CHOREO_FLOWS.def.shop.v1.payment", false},
		{"oncall", "choreo.log.shop.s1.v1._saga.paused", true},
		{"oncall", "choreo.log.shop.s1.v1._saga.cancelled", true},
		{"oncall", "choreo.log.shop.s1.v1.charge.done", false},
		{"oncall", "$KV.CHOREO_FLOWS.bulk.b1", true},
	} {
		if got := may(perms[tc.who].Publish, tc.subject); got != tc.want {
			t.Errorf("%s may publish %s: %v, want %v", tc.who, tc.subject, got, tc.want)
		}
	}
}
