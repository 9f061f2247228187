package browser_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

type (
	Trip   struct{ ID string }
	Packed struct{ Box string }
)

// runTrip runs, with the shop's admin client, a flow whose steps show
// each kind of bar: hold (warehouse) completes and its compensation fails
// once before it succeeds; pack runs a child saga (packing: one step);
// pay (bank) fails an attempt, is retried, then aborts: the saga
// compensates, reverting the child.
func runTrip(t *testing.T, c *saga.Client, id string) (*saga.Flow[Trip], *saga.Flow[Trip]) {
	t.Helper()
	fast := saga.RetryPolicy{MaxAttempts: 3, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	box := saga.NewStep[Trip, Packed]("box", saga.Owner("packer"))
	child := saga.MustDefine[Trip]("packing", 1, box, saga.StartedBy("tripdesk"))
	hold := saga.NewStep[Trip, Trip]("hold", saga.Owner("warehouse"), saga.Undo("unhold"), saga.WithCompensationRetry(fast))
	pack := saga.NewChild("pack", child, saga.Owner("tripdesk"))
	pay := saga.NewStep[saga.ChildResult, Packed]("pay", saga.Owner("bank"), saga.WithRetry(fast))
	flow := saga.MustDefine[Trip]("trip", 1, hold, pack, pay, saga.StartedBy("tripdesk"))
	var undos, pays atomic.Int32
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	err = errors.Join(
		saga.Handle(r, box, func(_ context.Context, in Trip) (Packed, error) { return Packed{Box: "b-" + in.ID}, nil },
			func(context.Context, Trip, Packed) error { return nil }),
		saga.Handle(r, hold, func(_ context.Context, in Trip) (Trip, error) { return in, nil },
			func(context.Context, Trip, Trip) error {
				if undos.Add(1) == 1 {
					return errors.New("warehouse api down")
				}
				return nil
			}),
		saga.HandleChild(r, pack),
		saga.Handle(r, pay, func(context.Context, saga.ChildResult) (Packed, error) {
			if pays.Add(1) == 1 {
				return Packed{}, errors.New("bank busy")
			}
			return Packed{}, saga.Abortf("card declined")
		}, nil),
	)
	if err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), c, flow, id, Trip{ID: id}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, c, flow, id, 60*time.Second, saga.StatusCompensated)
	return flow, child
}

// The case: the console's saga page draws the saga as a
// waterfall, a lane per step with its owner: bars for each step, a retry,
// the compensations (one failed attempt, then done), the failure marked,
// the child saga linked (and from it, its parent); the shop's page links
// an order to its waterfall.
func TestSagaWaterfall(t *testing.T) {
	exe := chromium(t)
	sh := startShopWithConsole(t)
	c := sh.Deps.Sagas
	runTrip(t, c, "w1")
	childID := saga.ChildID("w1", "pack")

	bctx := browser(t, exe, 1400, 1000)
	ctx, cancel := context.WithTimeout(bctx, 120*time.Second)
	defer cancel()
	tb := &tab{t: t, name: "waterfall", bctx: bctx, ctx: ctx, dump: func(dctx context.Context) string {
		shown, derr := chromedp.Run(dctx, chromedp.Evaluate[string](`document.querySelector("main").innerText + "\n" + document.querySelector("#banner").innerText`))
		return fmt.Sprintf("page:\n%s %v", shown, derr)
	}}
	step := tb.step
	row := func(s string) string { return `#saga-waterfall .wf-row[data-step="` + s + `"]` }
	count := func(sel string) int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
		step("count "+sel, err)
		return n
	}
	step("open the saga", chromedp.Do(ctx,
		recordCSP,
		chromedp.Navigate(sh.ConsoleURL+"#saga/trip/w1"),
		chromedp.WaitVisible(row("pay")+` .wf-bar.failed`),
	))
	// A lane for each step, each with its bars and owner.
	for s, owner := range map[string]string{"hold": "warehouse", "pack": "tripdesk", "pay": "bank"} {
		if n := count(row(s) + ` .wf-bar`); n < 1 {
			t.Errorf("step %s has %d bars, want at least 1", s, n)
		}
		if o := tb.text(row(s) + ` .wf-owner`); o != owner {
			t.Errorf("step %s's owner reads %q, want %q", s, o, owner)
		}
	}
	// pay: attempt 1 ended in a retry, the retry (attempt 2) failed.
	if n := count(row("pay") + ` .wf-bar[data-kind="action"][data-outcome="retry"]`); n != 1 {
		t.Errorf("pay: %d first attempts ending in a retry, want 1", n)
	}
	if n := count(row("pay") + ` .wf-bar.retry.failed[data-attempt="2"][data-outcome="failed"]`); n != 1 {
		t.Errorf("pay: %d failed retries (attempt 2), want 1", n)
	}
	title, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('`+row("pay")+` .wf-bar.retry').title`))
	step("read the retry's title", err)
	if !strings.Contains(title, "card declined") || !strings.Contains(title, "attempt 2") {
		t.Errorf("the retry's title reads %q", title)
	}
	// The failure marked where it happened.
	if n := count(row("pay") + ` .wf-mark.failure[data-phase="failed"]`); n != 1 {
		t.Errorf("pay: %d failure marks, want 1", n)
	}
	// hold: done, then its compensation: a failed attempt, then done.
	if n := count(row("hold") + ` .wf-bar.compensation[data-outcome="undo-retry"]`); n != 1 {
		t.Errorf("hold: %d compensation attempts that failed, want 1", n)
	}
	if n := count(row("hold") + ` .wf-bar.compensation[data-attempt="2"][data-outcome="compensated"]`); n != 1 {
		t.Errorf("hold: %d compensations done at attempt 2, want 1", n)
	}
	// pack: the child linked, and compensated (reverted) too.
	if n := count(row("pack") + ` .wf-bar.compensation[data-outcome="compensated"]`); n != 1 {
		t.Errorf("pack: %d compensations, want 1 (the child reverted)", n)
	}
	child := row("pack") + ` .wf-child a`
	if got := tb.text(child); got != "packing/"+childID {
		t.Errorf("pack's child link reads %q, want packing/%s", got, childID)
	}
	// The bars lie in time order across the lanes: hold's action before
	// pay's, pay's before hold's compensation.
	order, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
		const x = (sel) => document.querySelector(sel).getBoundingClientRect().left;
		const a = x('`+row("hold")+` .wf-bar.action'), b = x('`+row("pay")+` .wf-bar.action'), c = x('`+row("hold")+` .wf-bar.compensation');
		return a <= b && b < c ? "ok" : [a, b, c].join(" ");
	})()`))
	step("read the bars' places", err)
	if order != "ok" {
		t.Errorf("the bars are not in time order (hold action, pay action, hold compensation at x = %s)", order)
	}
	// Follow the child, and from it its parent.
	step("follow the child", chromedp.Do(ctx,
		chromedp.Click(child),
		chromedp.WaitVisible(row("box")+` .wf-bar.compensation`),
		chromedp.WaitVisible(`#wf-parent a`),
	))
	if p := tb.text(`#wf-parent`); !strings.Contains(p, "trip/w1") || !strings.Contains(p, "pack") {
		t.Errorf("the child's parent line reads %q", p)
	}
	if n := count(`#saga-waterfall .wf-row[data-step="_saga"] .wf-mark[data-phase="revert"]`); n != 1 {
		t.Errorf("the child shows %d revert marks, want 1", n)
	}
	step("back to the parent", chromedp.Do(ctx,
		chromedp.Click(`#wf-parent a`),
		chromedp.WaitVisible(row("pay")+` .wf-bar.failed`),
	))
	tb.checkCSP("the waterfall")

	// The shop's page: an order links to its saga in the console.
	base := "http://" + sh.HTTPAddr
	ada := shoptest.Register(t, base, "Ada", "FR")
	id := shoptest.PlaceOrder(t, base, ada, "4242424242424242", shoptest.Item("sku-mug", 1))
	sagatest.AwaitStatus(t, c, saga.Named("order"), id, 60*time.Second, saga.StatusCompleted)
	link := `#timeline a.saga-console`
	step("open the order in the shop", chromedp.Do(ctx,
		chromedp.Navigate(base+"/#token="+ada.Token+"&order="+id),
		chromedp.WaitVisible(link),
	))
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('`+link+`').href`))
	step("read the link", err)
	want := "http://" + sh.ConsoleAddr + "/#saga/order/" + id
	if href != want {
		t.Errorf("the order's link is %q, want %q (the console's address, no token)", href, want)
	}
	// The operator's browser holds the console's cookie (it opened the
	// console above): the link shows the order's waterfall.
	step("follow it", chromedp.Do(ctx,
		chromedp.Navigate(href),
		chromedp.WaitVisible(row("charge")+` .wf-bar[data-outcome="done"]`),
		chromedp.WaitVisible(row("bill")+` .wf-owner`),
	))
	if o := tb.text(row("charge") + ` .wf-owner`); o != "payment" {
		t.Errorf("the order's charge lane names %q, want payment", o)
	}
}
