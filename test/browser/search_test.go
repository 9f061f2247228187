package browser_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// The console's search box finds the shop's orders by their search
// attributes (the customer, the total, the country the parcel goes to),
// links each to its saga page, which shows them; a bad condition is said
// in the banner.
func TestConsoleSearchFindsOrdersByAttributes(t *testing.T) {
	exe := chromium(t)
	sh := startShopWithConsole(t)
	base := "http://" + sh.HTTPAddr
	c := sh.Deps.Sagas
	ada := shoptest.Register(t, base, "Ada", "FR")
	bob := shoptest.Register(t, base, "Bob", "DE")
	a1 := shoptest.PlaceOrder(t, base, ada, "4242424242424242", shoptest.Item("sku-mug", 1))
	a2 := shoptest.PlaceOrder(t, base, ada, "4242424242424242", shoptest.Item("sku-mug", 2))
	b1 := shoptest.PlaceOrder(t, base, bob, "4242424242424242", shoptest.Item("sku-mug", 1))
	for _, id := range []string{a1, a2, b1} {
		sagatest.AwaitStatus(t, c, saga.Named("order"), id, 90*time.Second, saga.StatusCompleted)
	}

	bctx := browser(t, exe, 1400, 1000)
	ctx, cancel := context.WithTimeout(bctx, 120*time.Second)
	defer cancel()
	tb := &tab{t: t, name: "console", bctx: bctx, ctx: ctx, dump: func(dctx context.Context) string {
		shown, derr := chromedp.Run(dctx, chromedp.Evaluate[string](`document.querySelector("main").innerText + "\n" + document.querySelector("#banner").innerText`))
		return fmt.Sprintf("page:\n%s %v", shown, derr)
	}}
	step, text := tb.step, tb.text
	row := func(id string) string { return fmt.Sprintf(`tr.search-row[data-flow="order"][data-id=%q]`, id) }

	step("search by customer", chromedp.Do(ctx,
		recordCSP,
		chromedp.Navigate(sh.ConsoleURL+"#search"),
		chromedp.WaitVisible(`#search-q`),
		chromedp.SendKeys(`#search-q`, "customer="+ada.ID),
		chromedp.Click(`#search-form button`),
		chromedp.WaitVisible(row(a1)),
		chromedp.WaitVisible(row(a2)),
	))
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("tr.search-row").length`)); err != nil || n != 2 {
		t.Errorf("customer=%s: %d rows (%v), want 2", ada.ID, n, err)
	}
	if r := text(row(a1)); !strings.Contains(r, "customer="+ada.ID) || !strings.Contains(r, "completed") {
		t.Errorf("the found order's row reads %q", r)
	}
	if s := text(`#search-total`); !strings.Contains(s, "2 sagas") {
		t.Errorf("the total reads %q", s)
	}

	// Two conditions, one on the step's result: Bob's parcel goes to DE.
	step("search by country and total", chromedp.Do(ctx,
		chromedp.Navigate(sh.ConsoleURL+"#search/"+"country%3DDE%20total%3E0"),
		chromedp.WaitVisible(row(b1)),
	))
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("tr.search-row").length`)); err != nil || n != 1 {
		t.Errorf("country=DE total>0: %d rows (%v), want 1", n, err)
	}

	// The row links to the saga's page, which shows its attributes.
	step("open the found order", chromedp.Do(ctx,
		chromedp.Click(row(b1)+" a"),
		chromedp.WaitVisible(`#saga-status`),
	))
	if f := text(`#saga-fields`); !strings.Contains(f, "country=DE") || !strings.Contains(f, "customer="+bob.ID) || !strings.Contains(f, "total=") {
		t.Errorf("the saga's fields read %q", f)
	}

	// A condition without an operator: the banner says why.
	step("search with a bad condition", chromedp.Do(ctx,
		chromedp.Navigate(sh.ConsoleURL+"#search/total"),
		chromedp.WaitVisible(`#banner`),
	))
	if b := text(`#banner`); !strings.Contains(b, "has no operator") {
		t.Errorf("the banner reads %q", b)
	}
	tb.checkCSP("the search")
}
