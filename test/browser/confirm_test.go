package browser_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// A big order's timeline shows its payment waiting for the customer's
// confirmation, with the time left; clicking "confirm payment" charges it
// and the order goes on to confirmed, pushed to the page.
func TestConfirmPaymentOfABigOrder(t *testing.T) {
	exe := chromium(t)
	base := startShop(t)
	ada := shoptest.Register(t, base, "Ada", "FR")
	id := shoptest.PlaceOrder(t, base, ada, "4242424242424242", shoptest.Item("sku-hoodie", 3)) // 147 EUR
	bctx := browser(t, exe, 1280, 900)
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	sel := `#timeline .tl.waiting[data-step="charge"]`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/#token="+ada.Token+"&order="+id),
		chromedp.WaitVisible(sel+` .confirm-payment`),
	); err != nil {
		t.Fatalf("the charge is not shown waiting for the customer: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "waiting for your confirmation") || !strings.Contains(text, "left") {
		t.Errorf("the waiting charge reads %q", text)
	}
	t.Logf("charge: %q", text)
	if err := chromedp.Do(ctx,
		chromedp.Click(sel+` .confirm-payment`),
		chromedp.WaitVisible(`#timeline .tl.completed[data-step="charge"]`),
		chromedp.WaitVisible(`#orders tr[data-id="`+id+`"][data-status="confirmed"]`),
	); err != nil {
		t.Fatalf("confirm payment: %v", err)
	}
	shoptest.AwaitStatus(t, base, ada, id, "confirmed")
}
