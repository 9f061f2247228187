package browser_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// With billing not running, the order's timeline shows its bill step as
// waiting for billing, for a time that grows, not as running.
func TestTimelineShowsAStepWaitingForItsService(t *testing.T) {
	exe := chromium(t)
	base := startShop(t, "billing")
	ada := shoptest.Register(t, base, "Ada", "FR")
	id := shoptest.PlaceOrder(t, base, ada, "4242424242424242", shoptest.Item("sku-mug", 1))
	bctx := browser(t, exe, 1280, 900)
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	sel := `#timeline .tl.waiting[data-step="bill"][data-activity="waiting"]`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/#token="+ada.Token+"&order="+id), // Ada's token, as a link hands it
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
