// Package browser drives the shop's web UI in headless Chromium.
package browser_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/choreo-go/choreo/services/shop"
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

func startShop(t *testing.T, without ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	dir := t.TempDir()
	go func() {
		done <- shop.Run(ctx, shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: dir, Without: without},
			func(s *shop.Shop) { ready <- s.HTTPAddr })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shop: %v", err)
		}
	})
	select {
	case addr := <-ready:
		return "http://" + addr
	case err := <-done:
		t.Fatalf("shop: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("shop did not start")
	}
	return ""
}

func TestBrowserOrdersGoLiveWithoutReload(t *testing.T) {
	exe := chromium(t)
	base := startShop(t)
	bctx := browser(t, exe, 1500, 1000)
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()

	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			dctx, dcancel := context.WithTimeout(bctx, 10*time.Second)
			defer dcancel()
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
			resp, herr := http.Get(base + "/api/orders")
			var server []byte
			if herr == nil {
				server, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			t.Fatalf("browser: %s: %v\npage: %s %v\nserver: %s %v", what, err, dump, derr, server, herr)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(sel))
		step("read "+sel, err)
		return v
	}
	marker := func() string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.noReload`))
		step("read the marker", err)
		return v
	}

	step("open the page and register a customer", chromedp.Do(ctx,
		// The page records what its Content-Security-Policy blocks.
		func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
			_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `window.cspViolations = [];
				document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(e.violatedDirective + " " + e.blockedURI));`})
			return chromedp.Void{}, err
		},
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
	csp, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.cspViolations)`))
	step("read the CSP violations", err)
	if csp != "[]" {
		t.Errorf("the page broke its Content-Security-Policy: %s", csp)
	}
}
