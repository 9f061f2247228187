package browser_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/console"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// The console's bulk page: a dry run counts the parked sagas and shows
// them, Start retries them with a progress bar, the act is listed with its
// outcome, and a paused step is listed with who paused it and why.
func TestConsoleBulkRetryWithProgress(t *testing.T) {
	exe := chromium(t)
	srv := sagatest.NewServer(t)
	c := srv.Client()
	op := srv.Ops()
	ctx0 := context.Background()
	flow, fixed := parkOne(t, c, "p0")
	for _, id := range []string{"p1", "p2", "p3"} {
		if err := saga.Start(ctx0, c, flow, id, Job{ID: id}); err != nil {
			t.Fatal(err)
		}
		sagatest.AwaitStatus(t, c, flow, id, 30*time.Second, saga.StatusCompensationFailed)
	}
	if err := op.PauseStep(ctx0, "opscheck", 1, "boom", "courier API down", time.Time{}); err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(console.Handler(c, op))
	t.Cleanup(web.Close)

	bctx := browser(t, exe, 1400, 1000)
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	tb := &tab{t: t, name: "console", bctx: bctx, ctx: ctx, dump: func(dctx context.Context) string {
		shown, derr := chromedp.Run(dctx, chromedp.Evaluate[string](`document.querySelector("main").innerText + "\n" + document.querySelector("#banner").innerText`))
		return fmt.Sprintf("page:\n%s %v", shown, derr)
	}}
	step, text := tb.step, tb.text

	step("open the bulk page", chromedp.Do(ctx,
		recordCSP,
		chromedp.Navigate(web.URL+"/#bulk"),
		chromedp.WaitVisible(`#pause-table tbody tr`),
	))
	if r := text(`#pause-table tbody tr`); !strings.Contains(r, "opscheck") || !strings.Contains(r, "boom") || !strings.Contains(r, "courier API down") || !strings.Contains(r, "admin") {
		t.Errorf("the pause reads %q", r)
	}
	step("dry run a retry", chromedp.Do(ctx,
		chromedp.SetValue(`#bulk-action`, "retry"),
		chromedp.SendKeys(`#bulk-flow`, "opscheck"),
		chromedp.SendKeys(`#bulk-reason`, "warehouse fixed"),
		chromedp.Click(`#bulk-plan`),
		chromedp.WaitVisible(`#bulk-sample tbody tr[data-id="p3"]`),
		chromedp.WaitEnabled(`#bulk-start`),
	))
	if r := text(`#bulk-result`); !strings.Contains(r, "4 saga(s) selected") {
		t.Errorf("the dry run reads %q", r)
	}
	for _, id := range []string{"p0", "p1", "p2", "p3"} {
		if st, err := c.Get(ctx0, flow, id); err != nil || st.Status != saga.StatusCompensationFailed {
			t.Fatalf("the dry run changed %s: %+v %v", id, st, err)
		}
	}
	fixed.Store(true)
	step("start it", chromedp.Do(ctx,
		chromedp.Click(`#bulk-start`),
		chromedp.WaitVisible(`#bulk-progress`),
		chromedp.WaitVisible(`#bulk-table tbody tr[data-state="done"]`),
	))
	sagatest.Poll(t, 20*time.Second, func() bool { return strings.Contains(tb.tryText(`#bulk-progress-text`), "4/4") },
		func() string { return "progress reads " + tb.tryText(`#bulk-progress-text`) })
	if p, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#bulk-bar").value + "/" + document.querySelector("#bulk-bar").max`)); err != nil || p != "4/4" {
		t.Errorf("the progress bar is at %q (%v)", p, err)
	}
	if r := text(`#bulk-table tbody tr[data-state="done"]`); !strings.Contains(r, "retry") || !strings.Contains(r, "warehouse fixed") {
		t.Errorf("the act's row reads %q", r)
	}
	for _, id := range []string{"p0", "p1", "p2", "p3"} {
		sagatest.AwaitStatus(t, c, flow, id, 30*time.Second, saga.StatusCompensated)
	}
	acts, err := op.BulkActs(ctx0)
	if err != nil || len(acts) != 1 || acts[0].Done != 4 || acts[0].State != ops.BulkFinished {
		t.Errorf("acts %+v %v", acts, err)
	}
	// A bad form is refused with the reason, nothing started.
	step("dry run of a bad filter", chromedp.Do(ctx,
		chromedp.SendKeys(`#bulk-since`, "yesterday"),
		chromedp.Click(`#bulk-plan`),
		chromedp.WaitVisible(`#bulk-result.refused`),
	))
	if r := text(`#bulk-result`); !strings.Contains(r, `since "yesterday"`) {
		t.Errorf("the refusal reads %q", r)
	}
	tb.checkCSP("the bulk page")
}
