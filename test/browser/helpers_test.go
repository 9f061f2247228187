package browser_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/choreo-go/choreo/saga/sagatest"
)

// browser starts headless Chromium (exe) with a w×h window, and extra
// flags, for the rest of the test. The browser lives as long as the
// returned context: a step's timeout, derived from it, still leaves it up
// to be asked what it shows.
func browser(t *testing.T, exe string, w, h int, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium")), chromedp.WindowSize(w, h))
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(cancelCtx)
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool]("true")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// placeOrder posts an order of qty of sku for customer, paid with card,
// until the gateway takes it (it learns the customers from their events),
// and returns its id.
func placeOrder(t *testing.T, base, customer, sku string, qty int, card string) string {
	t.Helper()
	var id string
	sagatest.Poll(t, 30*time.Second, func() bool {
		b, _ := json.Marshal(map[string]any{"customer_id": customer, "items": []any{map[string]any{"sku": sku, "qty": qty}}, "card": card})
		resp, err := http.Post(base+"/api/orders", "application/json", bytes.NewReader(b))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		id, _ = out["id"].(string)
		return resp.StatusCode == 202
	}, func() string { return "the order was not taken" })
	return id
}
