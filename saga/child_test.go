package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/choreo-go/choreo/internal/wire"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// An order whose packing is a flow of its own, run by the warehouse as a
// child saga: reserve, pack (the child: pick, label), charge (the pivot).
type (
	Parcel  struct{ ID string }
	Picked  struct{ ID, Bin string }
	Labeled struct{ ID, Label string }
	Billed  struct{ ID string }
)

type packing struct {
	child   *saga.Flow[Parcel]
	pick    *saga.Step[Parcel, Picked]
	label   *saga.Step[Picked, Labeled]
	parent  *saga.Flow[Parcel]
	reserve *saga.Step[Parcel, Parcel]
	pack    *saga.Step[Parcel, saga.ChildResult]
	charge  *saga.Step[saga.ChildResult, Billed]

	mu      sync.Mutex
	undone  map[string][]string // saga id -> steps compensated, in order
	release chan struct{}       // closed: the labels of sagas "slow…" are done
}

func newPacking(t *testing.T) *packing {
	t.Helper()
	flowSeq.Lock()
	flowSeq.n++
	n := flowSeq.n
	flowSeq.Unlock()
	p := &packing{undone: map[string][]string{}, release: make(chan struct{})}
	p.pick = saga.NewStep[Parcel, Picked]("pick", saga.Owner("warehouse"))
	p.label = saga.NewStep[Picked, Labeled]("label", saga.Owner("warehouse"))
	p.child = saga.MustDefine[Parcel](fmt.Sprintf("packing%d", n), 1, p.pick, p.label, saga.StartedBy("orders"))
	p.reserve = saga.NewStep[Parcel, Parcel]("reserve", saga.Owner("orders"))
	p.pack = saga.NewChild("pack", p.child, saga.Owner("orders"))
	p.charge = saga.NewStep[saga.ChildResult, Billed]("charge", saga.Owner("payment"), saga.Pivot())
	p.parent = saga.MustDefine[Parcel](fmt.Sprintf("parcel%d", n), 1, p.reserve, p.pack, p.charge, saga.StartedBy("orders"))
	return p
}

func (p *packing) undo(id, step string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.undone[id] = append(p.undone[id], step)
}

func (p *packing) undoneOf(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.undone[id], ",")
}

// run starts the services: the warehouse runs the child flow, orders the
// parent's reserve and pack, payment the charge. Sagas whose id starts
// with "nolabel" fail in label (the child compensates), with "nocharge" in
// charge (the parent compensates after the child completed).
func (p *packing) run(t *testing.T, c *saga.Client) {
	t.Helper()
	wh, err := saga.NewRunner(c)
	must(t, err)
	must(t, saga.Handle(wh, p.pick, func(ctx context.Context, in Parcel) (Picked, error) {
		return Picked{ID: in.ID, Bin: "B7"}, nil
	}, func(ctx context.Context, in Parcel, _ Picked) error {
		info, _ := saga.InfoFrom(ctx)
		p.undo(info.ID, "pick")
		return nil
	}))
	must(t, saga.Handle(wh, p.label, func(ctx context.Context, in Picked) (Labeled, error) {
		if strings.HasPrefix(in.ID, "nolabel") {
			return Labeled{}, saga.Abortf("no labels left")
		}
		if strings.HasPrefix(in.ID, "slow") {
			select {
			case <-p.release:
			case <-ctx.Done():
				return Labeled{}, ctx.Err()
			}
		}
		return Labeled{ID: in.ID, Label: "L-" + in.ID}, nil
	}, func(ctx context.Context, _ Picked, _ Labeled) error {
		info, _ := saga.InfoFrom(ctx)
		p.undo(info.ID, "label")
		return nil
	}))
	sagatest.Run(t, wh)
	orders, err := saga.NewRunner(c)
	must(t, err)
	must(t, saga.Handle(orders, p.reserve, func(ctx context.Context, in Parcel) (Parcel, error) { return in, nil },
		func(ctx context.Context, _ Parcel, _ Parcel) error {
			info, _ := saga.InfoFrom(ctx)
			p.undo(info.ID, "reserve")
			return nil
		}))
	must(t, saga.HandleChild(orders, p.pack))
	sagatest.Run(t, orders)
	pay, err := saga.NewRunner(c)
	must(t, err)
	must(t, saga.Handle(pay, p.charge, func(ctx context.Context, in saga.ChildResult) (Billed, error) {
		info, _ := saga.InfoFrom(ctx)
		if strings.HasPrefix(info.ID, "nocharge") {
			return Billed{}, saga.Abortf("card declined")
		}
		return Billed{ID: in.ID}, nil
	}, nil))
	sagatest.Run(t, pay)
}

// TestChildCompletes: the child runs in its own services and its end
// completes the parent's step with the child's id; Get shows the child's
// parent.
func TestChildCompletes(t *testing.T) {
	srv := sagatest.NewServer(t)
	p := newPacking(t)
	c := srv.Client()
	p.run(t, c)
	ctx := context.Background()
	must(t, saga.Start(ctx, c, p.parent, "o1", Parcel{ID: "o1"}))
	st := sagatest.AwaitStatus(t, c, p.parent, "o1", 30*time.Second, saga.StatusCompleted)
	cid := saga.ChildID("o1", "pack")
	child, err := c.Get(ctx, p.child, cid)
	must(t, err)
	if child.Status != saga.StatusCompleted || child.Parent == nil || *child.Parent != (saga.ParentRef{Flow: p.parent.Name(), ID: "o1", Step: "pack"}) {
		t.Fatalf("child %s: %s, parent %v", cid, child.Status, child.Parent)
	}
	if st.Parent != nil {
		t.Fatalf("the parent has a parent: %v", st.Parent)
	}
	tl, err := c.Timeline(ctx, p.parent, "o1")
	must(t, err)
	var got saga.ChildResult
	for _, ev := range tl {
		if ev.String() == "pack:done" {
			must(t, json.Unmarshal(ev.Data, &got))
		}
	}
	if got != (saga.ChildResult{Flow: p.child.Name(), Version: 1, ID: cid, Status: saga.StatusCompleted}) {
		t.Fatalf("pack's result: %+v", got)
	}
	// A child that ends before its parent's step records the wait settles
	// the step at once (no pack:waiting): both are right.
	got2 := strings.Join(sagatest.Timeline(t, c, p.parent, "o1"), " ")
	if got2 != "_saga:start reserve:done pack:waiting pack:done charge:done" && got2 != "_saga:start reserve:done pack:done charge:done" {
		t.Fatalf("timeline of o1: %s", got2)
	}
	if u := p.undoneOf(cid) + p.undoneOf("o1"); u != "" {
		t.Fatalf("compensated %q in a completed order", u)
	}
}

// TestChildCompensatesFailsParent: a child that compensates fails its
// parent's step, and the parent compensates.
func TestChildCompensatesFailsParent(t *testing.T) {
	srv := sagatest.NewServer(t)
	p := newPacking(t)
	c := srv.Client()
	p.run(t, c)
	ctx := context.Background()
	must(t, saga.Start(ctx, c, p.parent, "nolabel1", Parcel{ID: "nolabel1"}))
	st := sagatest.AwaitStatus(t, c, p.parent, "nolabel1", 30*time.Second, saga.StatusCompensated)
	cid := saga.ChildID("nolabel1", "pack")
	if pk := st.Step("pack"); pk.Status != saga.StepFailed || !strings.Contains(pk.Error, "compensated") || !strings.Contains(pk.Error, "no labels left") {
		t.Fatalf("pack: %s %q", pk.Status, pk.Error)
	}
	if u := p.undoneOf(cid); u != "pick" {
		t.Fatalf("child compensated %q, want pick", u)
	}
	if u := p.undoneOf("nolabel1"); u != "reserve" {
		t.Fatalf("parent compensated %q, want reserve (a failed pack has nothing to undo)", u)
	}
}

// TestChildCompletedThenParentCompensates: the parent fails after its
// child completed; the pack step's compensation reverts the child, whose
// own services compensate it, and the pack step is compensated once the
// child is.
func TestChildCompletedThenParentCompensates(t *testing.T) {
	srv := sagatest.NewServer(t)
	p := newPacking(t)
	c := srv.Client()
	p.run(t, c)
	ctx := context.Background()
	must(t, saga.Start(ctx, c, p.parent, "nocharge1", Parcel{ID: "nocharge1"}))
	t.Cleanup(func() {
		if t.Failed() {
			tl, _ := c.Timeline(ctx, p.child, saga.ChildID("nocharge1", "pack"))
			for _, ev := range tl {
				t.Logf("child %s %s", ev, stepsOf(ev.State))
			}
		}
	})
	st := sagatest.AwaitStatus(t, c, p.parent, "nocharge1", 30*time.Second, saga.StatusCompensated)
	cid := saga.ChildID("nocharge1", "pack")
	if pk := st.Step("pack"); pk.Status != saga.StepCompensated {
		t.Fatalf("pack: %s", pk.Status)
	}
	child, err := c.Get(ctx, p.child, cid)
	must(t, err)
	if child.Status != saga.StatusCompensated || !strings.Contains(child.Reason, "parent saga") {
		t.Fatalf("child: %s (%s)", child.Status, child.Reason)
	}
	if u := p.undoneOf(cid); u != "label,pick" {
		t.Fatalf("child compensated %q, want label,pick", u)
	}
	if u := p.undoneOf("nocharge1"); u != "reserve" {
		t.Fatalf("parent compensated %q, want reserve", u)
	}
	sagatest.AssertTimeline(t, c, p.child, cid, "_saga:start", "pick:done", "label:done", "_saga:revert", "label:compensated", "pick:compensated")
}

// TestParentCancelledWhileChildRuns: the parent is cancelled while its
// child runs; the pack step's compensation cancels the child, which
// compensates (its late label too), and then the pack step is
// compensated.
func TestParentCancelledWhileChildRuns(t *testing.T) {
	srv := sagatest.NewServer(t)
	p := newPacking(t)
	c := srv.Client()
	p.run(t, c)
	ctx := context.Background()
	must(t, saga.Start(ctx, c, p.parent, "slow1", Parcel{ID: "slow1"}))
	cid := saga.ChildID("slow1", "pack")
	awaitStep(t, c, p.parent, "slow1", "pack", saga.StepWaiting)
	awaitStep(t, c, p.child, cid, "label", saga.StepRunning)
	must(t, srv.Ops().Cancel(ctx, p.parent.Name(), "slow1", "customer left"))
	sagatest.Poll(t, 30*time.Second, func() bool {
		st, err := c.Get(ctx, p.child, cid)
		return err == nil && st.Status != saga.StatusRunning
	}, func() string { return "the child was not cancelled" })
	close(p.release)
	st := sagatest.AwaitStatus(t, c, p.parent, "slow1", 30*time.Second, saga.StatusCompensated)
	if pk := st.Step("pack"); pk.Status != saga.StepCompensated {
		t.Fatalf("pack: %s", pk.Status)
	}
	child, err := c.Get(ctx, p.child, cid)
	must(t, err)
	if child.Status != saga.StatusCompensated || !strings.Contains(child.Reason, "parent saga") {
		t.Fatalf("child: %s (%s)", child.Status, child.Reason)
	}
	if u := p.undoneOf(cid); u != "label,pick" {
		t.Fatalf("child compensated %q, want label,pick", u)
	}
}

// TestChildTrace: the child's spans are in the parent's trace, its start
// under the pack step's action.
func TestChildTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	srv := sagatest.NewServer(t)
	p := newPacking(t)
	c := srv.Client(saga.WithTracerProvider(tp))
	p.run(t, c)
	ctx := context.Background()
	must(t, saga.Start(ctx, c, p.parent, "o2", Parcel{ID: "o2"}))
	st := sagatest.AwaitStatus(t, c, p.parent, "o2", 30*time.Second, saga.StatusCompleted)
	child, err := c.Get(ctx, p.child, saga.ChildID("o2", "pack"))
	must(t, err)
	if st.TraceID == "" || child.TraceID != st.TraceID {
		t.Fatalf("trace ids: parent %q, child %q", st.TraceID, child.TraceID)
	}
	pf, cf := p.parent.Name(), p.child.Name()
	pack, cstart, pick, label, charge := pf+"/pack action", cf+" start", cf+"/pick action", cf+"/label action", pf+"/charge action"
	tree := awaitSpans(t, exp, st.TraceID, pf+" start", pack, cstart, pick, label, charge)
	for name, want := range map[string]string{cstart: pack, pick: cstart, label: pick} {
		if got := tree.parentName(tree.byName[name]); got != want {
			t.Errorf("span %q has parent %q, want %q", name, got, want)
		}
	}
	for name, s := range tree.byName {
		if pn := tree.parentName(s); pn == "?" || (pn == "" && name != pf+" start") {
			t.Errorf("span %q is not connected to the parent's start (parent %q)", name, pn)
		}
	}
}

// TestChildRevertForged: a revert of a saga with no parent does not
// stand: readers quarantine it and read the saga as it was.
func TestChildRevertForged(t *testing.T) {
	srv := sagatest.NewServer(t)
	p := newPacking(t)
	c := srv.Client()
	p.run(t, c)
	ctx := context.Background()
	// A saga of the child flow started on its own: no parent.
	must(t, saga.Start(ctx, c, p.child, "alone", Parcel{ID: "alone"}))
	sagatest.AwaitStatus(t, c, p.child, "alone", 30*time.Second, saga.StatusCompleted)
	_, js := srv.Connect()
	completed := newestState(t, js, p.child.Name(), "alone")
	// The state a revert would make, parent or not: compensating, ended
	// cleared, one event more.
	f := strings.Split(completed, "|")
	f[2], f[7], f[9] = "g", "", "its+parent+saga+x%2Fy+compensates"
	var n int
	fmt.Sscan(f[3], &n)
	f[3] = fmt.Sprint(n + 1)
	appendForged(t, js, p.child.Name(), "alone", wire.SagaStep, wire.PhaseReverted, strings.Join(f, "|"))
	cold := srv.Client()
	st, err := cold.Get(ctx, p.child, "alone")
	must(t, err)
	if st.Status != saga.StatusCompleted {
		t.Fatalf("after a forged revert: %s", st.Status)
	}
	// It is quarantined as forged, for the reason replay gives.
	sagatest.Poll(t, 10*time.Second, func() bool {
		dl, _ := srv.Ops().DeadLetters(ctx, p.child.Name())
		for _, d := range dl {
			if strings.HasSuffix(d.Subject, "._saga.revert") && strings.Contains(d.Reason, "no parent") {
				return true
			}
		}
		return false
	}, func() string { return "no dead letter for the forged revert" })
	if u := p.undoneOf("alone"); u != "" {
		t.Fatalf("compensated %q on a forged revert", u)
	}
}

// TestChildPermissions: the pack step's owner may start, revert and cancel
// sagas of the child flow and read their ends through its own consumer;
// no one else may, and the owner gains nothing else of the child flow.
func TestChildPermissions(t *testing.T) {
	p := newPacking(t)
	perms, err := access.Permissions(p.parent, p.child)
	must(t, err)
	pf, cf := p.parent.Name(), p.child.Name()
	for _, tc := range []struct {
		who, subject string
		want         bool
	}{
		{"orders", "choreo.log." + cf + ".o1-pack.v1._saga.start", true},
		{"orders", "choreo.log." + cf + ".o1-pack.v1._saga.revert", true},
		{"orders", "choreo.log." + cf + ".o1-pack.v1._saga.cancelled", true},
		{"orders", "choreo.cmd." + cf + ".o1-pack.v1.label.undo", true},
		{"orders", "$JS.API.CONSUMER.MSG.NEXT.CHOREO." + cf + "__parent_" + pf + "_pack", true},
		{"orders", "choreo.log." + cf + ".o1-pack.v1.pick.done", false},
		{"orders", "choreo.log." + cf + ".o1-pack.v1._saga.resume", false},
		{"warehouse", "choreo.log." + cf + ".o1-pack.v1._saga.revert", false},
		{"warehouse", "choreo.log." + cf + ".o1-pack.v1._saga.cancelled", false},
		{"payment", "choreo.log." + cf + ".o1-pack.v1._saga.revert", false},
		{"payment", "choreo.log." + cf + ".o1-pack.v1._saga.start", false},
		{"payment", "$JS.API.CONSUMER.MSG.NEXT.CHOREO." + cf + "__parent_" + pf + "_pack", false},
		{"warehouse", "$JS.API.CONSUMER.MSG.NEXT.CHOREO." + cf + "__parent_" + pf + "_pack", false},
	} {
		if got := may(perms[tc.who].Publish, tc.subject); got != tc.want {
			t.Errorf("%s publishing %s: %v, want %v", tc.who, tc.subject, got, tc.want)
		}
	}
}

// TestChildDefine: a compensatable step cannot run a child flow with a
// pivot (a child past it cannot be reverted); a pivot step can.
func TestChildDefine(t *testing.T) {
	flowSeq.Lock()
	flowSeq.n++
	n := flowSeq.n
	flowSeq.Unlock()
	ship := saga.NewStep[Parcel, Parcel]("ship", saga.Pivot())
	child := saga.MustDefine[Parcel](fmt.Sprintf("shipping%d", n), 1, ship)
	if _, err := saga.Define[Parcel](fmt.Sprintf("sender%d", n), 1, saga.NewChild("send", child)); !errors.Is(err, saga.ErrInvalidFlow) || !strings.Contains(err.Error(), "Pivot") {
		t.Fatalf("a compensatable step running a child with a pivot: %v", err)
	}
	if _, err := saga.Define[Parcel](fmt.Sprintf("sender%d", n), 1, saga.NewChild("send", child, saga.Pivot())); err != nil {
		t.Fatalf("a pivot running a child with a pivot: %v", err)
	}
	if _, err := saga.Define[Parcel](child.Name(), 2, saga.NewChild("again", child)); !errors.Is(err, saga.ErrInvalidFlow) {
		t.Fatalf("a flow running itself: %v", err)
	}
	plain := saga.NewStep[Parcel, saga.ChildResult]("plain")
	saga.MustDefine[Parcel](fmt.Sprintf("plain%d", n), 1, plain)
	srv := sagatest.NewServer(t)
	r, err := saga.NewRunner(srv.Client())
	must(t, err)
	if err := saga.HandleChild(r, plain); !errors.Is(err, saga.ErrInvalidOption) {
		t.Fatalf("HandleChild of a step that runs no child: %v", err)
	}
}
