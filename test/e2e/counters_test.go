package e2e_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choreo-go/choreo/services/shop/shoptest"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
)

// Many orders placed at once: the gateway records each as pending the
// moment the order service answers, while its projection of the same
// order's OrderPlaced may come before or after. Every counter must end
// equal to what the services recorded (the gateway once counted 23 orders
// and 24 confirmed).
func TestCountersAfterManyFastOrdersEqualTheServicesRecords(t *testing.T) {
	const n = 40
	h := newShop(t)
	ada := h.register("ada", "FR")
	ids := make([]string, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				card := okCard
				if i%4 == 3 {
					card = declinedCard
				}
				ids[i] = h.order(ada, card, shoptest.Item("sku-sticker", 1))
			}
		})
	}
	wg.Wait()
	for i, id := range ids {
		want := "confirmed"
		if i%4 == 3 {
			want = "rejected"
		}
		h.await(id, want, 60*time.Second)
	}
	ctx := context.Background()
	var diffs []string
	sagatest.Poll(t, 20*time.Second, func() bool {
		diffs = recordsDiff(ctx, h, 1)
		return len(diffs) == 0
	}, func() string { return strings.Join(diffs, "\n") })
	_, s := h.do("GET", "/api/stats", nil)
	t.Logf("%d orders placed at once: stats %v", n, s)
	if s["orders"] != float64(n) || s["orders_confirmed"] != float64(n*3/4) || s["orders_rejected"] != float64(n/4) {
		t.Errorf("stats %v, want %d orders, %d confirmed, %d rejected", s, n, n*3/4, n/4)
	}
}

// recordsDiff compares every counter of the gateway with the services'
// own records (the order service's orders, payment's ledger) and says
// where they differ.
func recordsDiff(ctx context.Context, h *shopHarness, customers int) []string {
	ledger, err := payment.Ledger(ctx, h.deps)
	if err != nil {
		return []string{err.Error()}
	}
	var charged, refunded, nCharges, nRefunds int64
	for _, c := range ledger {
		if c.Status == "void" {
			continue
		}
		nCharges++
		charged += c.Amount
		if c.Status == "refunded" {
			nRefunds++
			refunded += c.Amount
		}
	}
	orders, err := order.Orders(ctx, h.deps)
	if err != nil {
		return []string{err.Error()}
	}
	var confirmed, rejected, declined float64
	for _, o := range orders {
		switch o.Status {
		case "confirmed":
			confirmed++
		case "rejected":
			rejected++
			if strings.Contains(o.Reason, "card declined") {
				declined++
			}
		}
	}
	_, s := h.do("GET", "/api/stats", nil)
	want := map[string]float64{
		"orders": float64(len(orders)), "orders_confirmed": confirmed, "orders_rejected": rejected, "customers": float64(customers),
		"payments_succeeded": float64(nCharges), "payments_failed": declined, "refunds": float64(nRefunds),
		"charged": float64(charged), "refunded": float64(refunded), "revenue": float64(charged - refunded),
	}
	var diffs []string
	for k, v := range want {
		if s[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s = %v, the services' records say %v", k, s[k], v))
		}
	}
	sort.Strings(diffs)
	return diffs
}
