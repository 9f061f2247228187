package browser_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// startShopWithConsole runs the whole shop with its operator console.
func startShopWithConsole(t *testing.T) *shop.Shop {
	t.Helper()
	s := shoptest.RunShop(t, shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), ConsoleAddr: "127.0.0.1:0"})
	if s.ConsoleAddr == "" {
		t.Fatal("the shop serves no console")
	}
	return s.Shop
}

type (
	Job  struct{ ID string }
	Held struct{ Hold string }
)

// parkOne runs, with the shop's admin client, a flow whose second step
// fails and whose first step's compensation is refused until fix is set:
// its saga parks.
func parkOne(t *testing.T, c *saga.Client, id string) (*saga.Flow[Job], *atomic.Bool) {
	t.Helper()
	fixed := &atomic.Bool{}
	fast := saga.RetryPolicy{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	hold := saga.NewStep[Job, Held]("hold", saga.Owner("warehouse"), saga.Undo("unhold"), saga.WithCompensationRetry(fast))
	boom := saga.NewStep[Held, Held]("boom", saga.Owner("courier"))
	flow := saga.MustDefine[Job]("opscheck", 1, hold, boom)
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	err = errors.Join(
		saga.Handle(r, hold, func(_ context.Context, j Job) (Held, error) { return Held{Hold: "h-" + j.ID}, nil },
			func(context.Context, Job, Held) error {
				if !fixed.Load() {
					return errors.New("warehouse api refuses the unhold")
				}
				return nil
			}),
		saga.Handle(r, boom, func(context.Context, Held) (Held, error) { return Held{}, saga.Abortf("courier gone") }, nil),
	)
	if err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), c, flow, id, Job{ID: id}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, c, flow, id, 30*time.Second, saga.StatusCompensationFailed)
	return flow, fixed
}

// The case: in the console, a dead letter's reason and subject
// are shown (its markup payload as text), its replay's outcome is shown;
// a parked saga is retried and leaves the parked list; the flow drawing
// counts the orders' steps live.
func TestConsoleDeadLettersParkedAndLiveCounts(t *testing.T) {
	exe := chromium(t)
	sh := startShopWithConsole(t)
	base := "http://" + sh.HTTPAddr
	console := sh.ConsoleURL // with this run's token
	c := sh.Deps.Sagas
	ctx0 := context.Background()

	// An order, confirmed.
	ada := shoptest.Register(t, base, "Ada", "FR")
	id := shoptest.PlaceOrder(t, base, ada, "4242424242424242", shoptest.Item("sku-mug", 1))
	order := sagatest.AwaitStatus(t, c, saga.Named("order"), id, 60*time.Second, saga.StatusCompleted)

	// A dead letter: an event with no headers, its payload markup.
	subject := "choreo.log.order.evil1.v1._saga.start"
	payload := `<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>`
	if err := sh.Deps.NC.PublishMsg(&nats.Msg{Subject: subject, Data: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	sagatest.Poll(t, 30*time.Second, func() bool {
		dls, _ := sh.Deps.Ops.DeadLetters(ctx0, "")
		for _, d := range dls {
			if d.Subject == subject {
				seq = d.Sequence
			}
		}
		return seq > 0
	}, func() string { return "the event was not dead-lettered" })

	// A parked saga.
	flow, fixed := parkOne(t, c, "p1")

	bctx := browser(t, exe, 1400, 1000)
	ctx, cancel := context.WithTimeout(bctx, 120*time.Second)
	defer cancel()
	tb := &tab{t: t, name: "console", bctx: bctx, ctx: ctx, dump: func(dctx context.Context) string {
		shown, derr := chromedp.Run(dctx, chromedp.Evaluate[string](`document.querySelector("main").innerText + "\n" + document.querySelector("#banner").innerText`))
		return fmt.Sprintf("page:\n%s %v", shown, derr)
	}}
	step, text := tb.step, tb.text

	// Dead letters: the reason, the subject and the payload, as text.
	row := fmt.Sprintf(`tr.dead-row[data-seq="%d"]`, seq)
	step("open the dead letters", chromedp.Do(ctx,
		recordCSP, // the page records what its Content-Security-Policy blocks
		chromedp.Navigate(console+"#dead"),
		chromedp.WaitVisible(row),
	))
	if r := text(row); !strings.Contains(r, subject) || !strings.Contains(r, "missing headers") || !strings.Contains(r, `<img src=x onerror="window.pwned=1">`) {
		t.Errorf("the dead letter's row reads %q", r)
	}
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[string](`String(window.pwned) + " " + document.querySelectorAll("#dead-table img, #dead-table script").length`))
	step("look for the payload's markup", err)
	if pwned != "undefined 0" {
		t.Errorf("the payload ran or became markup: %s", pwned)
	}
	step("replay it", chromedp.Do(ctx,
		chromedp.Click(row+` button.replay`),
		chromedp.WaitVisible(row+` .outcome.refused`),
	))
	if o := text(row + ` .outcome`); !strings.Contains(o, "refused") || !strings.Contains(o, "saga log event") {
		t.Errorf("the replay's outcome reads %q", o)
	}

	// Parked: retried once the cause is fixed, the saga leaves the list.
	prow := `tr.parked-row[data-flow="opscheck"][data-id="p1"]`
	step("open the parked sagas", chromedp.Do(ctx,
		chromedp.Navigate(console+"#parked"),
		chromedp.WaitVisible(prow),
	))
	if r := text(prow); !strings.Contains(r, "hold") || !strings.Contains(r, "warehouse api refuses the unhold") || !strings.Contains(r, "courier gone") {
		t.Errorf("the parked saga's row reads %q", r)
	}
	fixed.Store(true)
	step("retry it", chromedp.Do(ctx,
		chromedp.Click(prow+` button.retry`),
		chromedp.WaitVisible(`#parked-result.ok[data-id="p1"]`),
		chromedp.WaitNotPresent(prow),
	))
	if r := text(`#parked-result`); !strings.Contains(r, "compensates again") {
		t.Errorf("the retry's result reads %q", r)
	}
	sagatest.AwaitStatus(t, c, flow, "p1", 30*time.Second, saga.StatusCompensated)

	// The saga's page: its steps and timeline, with the reasons.
	step("open the saga", chromedp.Do(ctx,
		chromedp.Navigate(console+"#saga/opscheck/p1"),
		chromedp.WaitVisible(`#saga-status`),
	))
	if tl := text(`#saga-timeline`); !strings.Contains(tl, "boom:failed") || !strings.Contains(tl, "courier gone") || !strings.Contains(tl, "_saga:resume") {
		t.Errorf("the saga's timeline reads %q", tl)
	}

	// Flows: a flow named without a version opens on the version with
	// sagas in flight, else the newest (v2, where the shop's orders are),
	// and the list gives each version's totals.
	step("open the order flow without a version", chromedp.Do(ctx,
		chromedp.Navigate(console+"#flows/order"),
		chromedp.WaitVisible(`#flow-drawing[data-flow="order"][data-version="`+strconv.Itoa(order.Version)+`"]`),
	))
	if v := text(`a.flow-pick.selected`); !strings.Contains(v, "order") || !strings.Contains(v, "v"+strconv.Itoa(order.Version)) || !strings.Contains(v, "1 saga") {
		t.Errorf("the selected flow reads %q", v)
	}

	// Flows: the order's version drawn, its charge step counted live.
	count := `#flow-drawing .node[data-step="charge"] .count[data-kind="completed"]`
	step("open the order flow", chromedp.Do(ctx,
		chromedp.Navigate(console+"#flows/order/v"+strconv.Itoa(order.Version)),
		chromedp.WaitVisible(count+`:not(.zero)`),
		chromedp.WaitVisible(`#flow-drawing .node.pivot[data-step="confirm"]`),
		chromedp.WaitVisible(`#flow-drawing .pos.parallel .node[data-step="reserve"]`),
	))
	// The drawing is redrawn as its counts refresh: read until it holds.
	var completed string
	sagatest.Poll(t, 20*time.Second, func() bool {
		completed = tb.tryText(count)
		f := strings.Fields(completed)
		n := 0
		if len(f) > 0 {
			n, _ = strconv.Atoi(f[0])
		}
		return n >= 1
	}, func() string { return fmt.Sprintf("charge completed count %q", completed) })
	n, _ := strconv.Atoi(strings.Fields(completed)[0])
	// The drawing is redrawn as its counts refresh: read the node until it
	// says what it must, within a deadline.
	var node string
	sagatest.Poll(t, 20*time.Second, func() bool {
		node = tb.tryText(`#flow-drawing .node[data-step="charge"]`)
		return strings.Contains(node, "↺ refund") && strings.Contains(node, "payment")
	}, func() string { return fmt.Sprintf("the charge node reads %q", node) })
	// Live: a second order raises the count without a reload.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.noReload = true`)); err != nil {
		step("mark the page", err)
	}
	shoptest.MustCall(t, "POST", base+"/api/orders", map[string]any{"customer_id": ada.ID, "items": []any{shoptest.Item("sku-mug", 1)}, "card": "4242424242424242"}, ada.Auth()...)
	want := strconv.Itoa(n + 1)
	sagatest.Poll(t, 60*time.Second, func() bool {
		v, err := chromedp.Run(ctx, chromedp.Text(count+` b`))
		return err == nil && v == want
	}, func() string { return "the count did not reach " + want + ": " + text(count) })
	if v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.noReload === true`)); err != nil || !v {
		t.Errorf("the page reloaded (%v %v)", v, err)
	}
	tb.checkCSP("the console")
}
