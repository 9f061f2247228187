package browser_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/choreo-go/choreo/saga/sagatest"
)

// With billing not running, the order's timeline shows its bill step as
// waiting for billing, for a time that grows, not as running.
func TestTimelineShowsAStepWaitingForItsService(t *testing.T) {
	exe := chromium(t)
	base := startShop(t, "billing")
	ada := post(t, base+"/api/customers", map[string]any{"name": "Ada", "email": "ada@example.com",
		"address": map[string]string{"line1": "1 Rue de Rivoli", "city": "Paris", "postcode": "75001", "country": "FR"}})["id"].(string)
	var id string
	sagatest.Poll(t, 30*time.Second, func() bool {
		b, _ := json.Marshal(map[string]any{"customer_id": ada, "items": []any{map[string]any{"sku": "sku-mug", "qty": 1}}, "card": "4242424242424242"})
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
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium")), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool]("true")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	sel := `#timeline .tl.waiting[data-step="bill"][data-activity="waiting"]`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/#order="+id),
		chromedp.WaitVisible(sel),
		chromedp.WaitVisible(`#timeline .tl.completed[data-step="reserve"]`),
	); err != nil {
		t.Fatalf("the bill step is not shown waiting: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "waiting for billing") || strings.Contains(text, "running") {
		t.Errorf("the waiting bill step reads %q", text)
	}
	t.Logf("bill: %q", text)
}
