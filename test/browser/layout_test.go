package browser_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// post posts body to url and wants a 2xx answer, which it returns.
func post(t *testing.T, url string, body any) map[string]any {
	t.Helper()
	code, out := shoptest.MustCall(t, "POST", url, body)
	if code >= 300 {
		t.Fatalf("POST %s: %d %v", url, code, out)
	}
	return out
}

// box is an element's place on the page.
type box struct{ Left, Right, Top, Bottom, ScrollW, ClientW float64 }

// layout is what the test measures of the page at one width.
type layout struct {
	Inner, ScrollW float64
	Cards          map[string]box
}

// The page fits every width from 1024 px: no horizontal scrollbar, no
// card cut off or overflowing, the order form, the orders and the saga
// timeline side by side; below 1024 px the three stack. Screenshots at
// 1024, 1280 and 1920 go to $CHOREO_SCREENSHOTS (a temporary directory
// otherwise).
func TestLayoutFitsFrom1024AndStacksBelow(t *testing.T) {
	exe := chromium(t)
	base := startShop(t)
	// Orders with long ids and a long reason, one of them selected.
	customer := func(body map[string]any) shoptest.Customer {
		res := post(t, base+"/api/customers", body)
		return shoptest.Customer{ID: res["id"].(string), Token: res["token"].(string)}
	}
	ada := customer(map[string]any{"name": "Ada Lovelace-Byron", "email": "ada@example.com",
		"address": map[string]string{"line1": "1 Rue de Rivoli", "city": "Paris", "postcode": "75001", "country": "FR"}})
	scott := customer(map[string]any{"name": "Robert Falcon Scott", "email": "scott@example.com",
		"address": map[string]string{"line1": "Hut Point", "city": "Ross Island", "postcode": "0000", "country": "AQ"}})
	var ids []string
	owner := map[string]shoptest.Customer{}
	for _, o := range []struct {
		cust shoptest.Customer
		card string
	}{{ada, "4242424242424242"}, {ada, "4000000000000002"}, {scott, "4242424242424242"}} {
		id := shoptest.PlaceOrder(t, base, o.cust, o.card, shoptest.Item("sku-mug", 2))
		ids = append(ids, id)
		owner[id] = o.cust
	}
	for _, id := range ids {
		sagatest.Poll(t, 60*time.Second, func() bool {
			_, o := shoptest.Call(t, "GET", base+"/api/orders/"+id, nil, owner[id].Auth()...)
			return o != nil && o["status"] != "pending"
		},
			func() string { return "order " + id + " did not settle" })
	}
	dir := os.Getenv("CHOREO_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	bctx := browser(t, exe, 1920, 1000, chromedp.Flag("hide-scrollbars", false))
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	aq := ids[2]
	// A browser without their tokens sees none of their orders, once it
	// has loaded what it may (the counters come with the orders).
	err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(`#live.on`),
		chromedp.Poll[chromedp.Void](`document.querySelector("#s-orders").textContent === "3"`))
	rows := -1
	if err == nil {
		rows, err = chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("tr.order-row").length`))
	}
	if err != nil || rows != 0 {
		t.Errorf("a browser without tokens shows %d orders (%v), want none", rows, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1920, 1000),
		// The browser is handed both customers' tokens, as a link does
		// (a new page: a link to the same page would change its hash only).
		chromedp.Navigate("about:blank"),
		chromedp.Navigate(base+"/#token="+ada.Token+"&token="+scott.Token+"&order="+aq),
		chromedp.WaitVisible(`#live.on`),
		chromedp.WaitVisible(`tr.order-row[data-status="rejected"]`),
		chromedp.WaitVisible(`#timeline .tl.failed[data-step="book"]`),
	); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	measure := `(() => {
		const r = (sel) => { const e = document.querySelector(sel); const b = e.getBoundingClientRect();
			return {Left: b.left, Right: b.right, Top: b.top + scrollY, Bottom: b.bottom + scrollY, ScrollW: e.scrollWidth, ClientW: e.clientWidth}; };
		return {Inner: window.innerWidth, ScrollW: document.documentElement.scrollWidth,
			Cards: {form: r(".order-form"), orders: r(".orders"), timeline: r(".timeline-card"), flow: r(".flow-card"), stats: r(".stats")}};
	})()`
	for _, width := range []int64{1920, 1280, 1024, 1000, 800} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900)); err != nil {
				t.Fatal(err)
			}
			l, err := chromedp.Run(ctx, chromedp.Evaluate[layout](measure))
			if err != nil {
				t.Fatal(err)
			}
			if width == 1024 || width == 1280 || width == 1920 {
				png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, fmt.Sprintf("shop-%d.png", width))
				if err := os.WriteFile(path, png, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("screenshot %s", path)
			}
			if l.ScrollW > l.Inner {
				t.Errorf("horizontal overflow: the page is %v px wide in a %v px window", l.ScrollW, l.Inner)
			}
			for name, b := range l.Cards {
				if b.Left < 0 || b.Right > l.Inner+0.5 {
					t.Errorf("%s is cut off: %v to %v in %v px", name, b.Left, b.Right, l.Inner)
				}
				if b.ScrollW > b.ClientW+1 {
					t.Errorf("%s's content overflows it: %v px in %v", name, b.ScrollW, b.ClientW)
				}
			}
			f, o, tl := l.Cards["form"], l.Cards["orders"], l.Cards["timeline"]
			if width >= 1024 {
				if !(f.Right <= o.Left && o.Right <= tl.Left && tl.Top < o.Bottom) {
					t.Errorf("at %d px the form, orders and timeline are not side by side: %+v %+v %+v", width, f, o, tl)
				}
			} else if !(f.Bottom <= o.Top && o.Bottom <= tl.Top) {
				t.Errorf("at %d px the form, orders and timeline do not stack: %+v %+v %+v", width, f, o, tl)
			}
		})
	}
}
