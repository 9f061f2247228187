// Package browser drives the shop's web UI in headless Chromium.
package browser_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// chromium finds Debian's chromium. In CI its absence fails the test:
// .ci/run installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: .ci/run must install Debian's chromium")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium); CI runs this test")
	return ""
}

// startShop runs the shop, without the services named, until the test
// ends, and returns the gateway's URL.
func startShop(t *testing.T, without ...string) string {
	t.Helper()
	return shoptest.RunShop(t, shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), Without: without}).Base
}

func TestBrowserOrdersGoLiveWithoutReload(t *testing.T) {
	exe := chromium(t)
	base := startShop(t)
	bctx := browser(t, exe, 1500, 1000)
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()

	tb := &tab{t: t, name: "browser", bctx: bctx, ctx: ctx, dump: func(dctx context.Context) string {
		dump, derr := chromedp.Run(dctx, chromedp.Evaluate[string](`JSON.stringify({
				live: document.querySelector("#live").className,
				formError: document.querySelector("#form-error").textContent,
				card: document.querySelector("#card").value,
				customer: document.querySelector("#customer-select").value,
				placeDisabled: document.querySelector("#place-order").disabled,
				rows: [...document.querySelectorAll("tr.order-row")].map((r) => r.dataset.id + "=" + r.dataset.status),
				catalog: [...document.querySelectorAll("#catalog input")].map((i) => i.dataset.sku + "=" + i.value),
				timeline: document.querySelector("#timeline").innerText,
			}, null, 1)`))
		_, server := shoptest.Call(t, "GET", base+"/api/stats", nil)
		return fmt.Sprintf("page: %s %v\nserver's counters: %s", dump, derr, shoptest.JSON(server))
	}}
	step, text := tb.step, tb.text
	marker := func() string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.noReload`))
		step("read the marker", err)
		return v
	}

	step("open the page and register a customer", chromedp.Do(ctx,
		recordCSP, // the page records what its Content-Security-Policy blocks
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`#live.on`), // the websocket is up
		// The form opens by itself when there is no customer; its fields
		// come filled in.
		chromedp.WaitVisible(`#new-customer`),
		chromedp.Click(`#register`),
		chromedp.WaitReady(`#customer-select option[value^="cus-"]`),
		chromedp.WaitVisible(`#catalog .product input`),
	))
	// A mark on the page: if the page reloads, it is gone.
	_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.noReload = "still here"; true`))
	step("mark the page", err)

	// A good card: pending at once, then confirmed by a push.
	step("order with a good card", chromedp.Do(ctx,
		chromedp.SetValue(`#card`, "4242424242424242"),
		chromedp.Click(`#place-order`),
		chromedp.WaitVisible(`tr.order-row`),
		chromedp.WaitVisible(`tr.order-row[data-status="confirmed"]`),
	))
	if m := marker(); m != "still here" {
		t.Errorf("the page reloaded (marker %q)", m)
	}

	// A declined card: rejected; the charge failed, so nothing is refunded.
	step("order with a declined card", chromedp.Do(ctx,
		chromedp.Click(`button[data-card="4000000000000002"]`),
		chromedp.Click(`#place-order`),
		chromedp.WaitVisible(`tr.order-row[data-status="rejected"]`),
		chromedp.WaitVisible(`#timeline .tl.failed[data-step="charge"]`),
	))
	if tl := text(`#timeline`); !strings.Contains(tl, "card declined") || strings.Contains(tl, "↺ compensated") {
		t.Errorf("declined order's timeline:\n%s", tl)
	}

	// Sold out after a successful charge: the refund is in the timeline.
	// Wait for the catalog reload after the last order, then change it.
	step("order what is sold out", chromedp.Do(ctx,
		chromedp.WaitVisible(`#catalog .product input[data-sku="sku-sold-out"]`),
		chromedp.Click(`button[data-card="4242424242424242"]`),
		chromedp.SetValue(`#catalog input[data-sku="sku-mug"]`, "0"),
		chromedp.SetValue(`#catalog input[data-sku="sku-sold-out"]`, "1"),
		chromedp.Click(`#place-order`),
		chromedp.WaitVisible(`#timeline .tl.compensated[data-step="charge"]`),
		chromedp.WaitVisible(`#timeline .tl.failed[data-step="reserve"]`),
	))
	if tl := text(`#timeline`); !strings.Contains(tl, "out of stock") || !strings.Contains(tl, "↺ compensated") {
		t.Errorf("sold-out order's timeline:\n%s", tl)
	}
	if m := marker(); m != "still here" {
		t.Errorf("the page reloaded (marker %q)", m)
	}
	if n := text(`#s-refunds`); n != "1" {
		t.Errorf("refunds counter %q, want 1", n)
	}
	// The page, its websocket included, works within its CSP.
	tb.checkCSP("the page")
}
