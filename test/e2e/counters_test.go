package e2e_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shop/shoptest"
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
	l, o, err := records(ctx, h, true)
	if err != nil {
		return []string{err.Error()}
	}
	return h.statsDiff(map[string]float64{
		"orders": float64(o.orders), "orders_confirmed": o.confirmed, "orders_rejected": o.rejected, "customers": float64(customers),
		"payments_succeeded": float64(l.charges), "payments_failed": o.declined, "refunds": float64(l.refunds),
		"charged": float64(l.charged), "refunded": float64(l.refunded), "revenue": float64(l.charged - l.refunded),
	})
}

// records sums payment's ledger (its void charges left out when
// skipVoid) and counts the order service's orders.
func records(ctx context.Context, h *shopHarness, skipVoid bool) (ledger, orders, error) {
	l, err := ledgerTotals(ctx, h, skipVoid)
	if err != nil {
		return l, orders{}, err
	}
	o, err := orderCounts(ctx, h)
	return l, o, err
}

// ledger is what payment's ledger sums to.
type ledger struct{ charged, refunded, charges, refunds int64 }

// ledgerTotals sums payment's ledger, its void charges left out when
// skipVoid.
func ledgerTotals(ctx context.Context, h *shopHarness, skipVoid bool) (ledger, error) {
	entries, err := payment.Ledger(ctx, h.deps)
	var l ledger
	for _, c := range entries {
		if skipVoid && c.Status == "void" {
			continue
		}
		l.charges++
		l.charged += c.Amount
		if c.Status == "refunded" {
			l.refunds++
			l.refunded += c.Amount
		}
	}
	return l, err
}

// orders counts the order service's orders by how they ended.
type orders struct {
	orders                        int
	confirmed, rejected, declined float64 // declined: rejected for a declined card
}

func orderCounts(ctx context.Context, h *shopHarness) (orders, error) {
	list, err := order.Orders(ctx, h.deps)
	o := orders{orders: len(list)}
	for _, x := range list {
		switch x.Status {
		case "confirmed":
			o.confirmed++
		case "rejected":
			o.rejected++
			if strings.Contains(x.Reason, "card declined") {
				o.declined++
			}
		}
	}
	return o, err
}

// statsDiff says, sorted, where the gateway's /api/stats differs from
// want, after the problems given.
func (h *shopHarness) statsDiff(want map[string]float64, problems ...string) []string {
	_, s := h.do("GET", "/api/stats", nil)
	diffs := problems
	for k, v := range want {
		if s[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s = %v, the services' records say %v", k, s[k], v))
		}
	}
	sort.Strings(diffs)
	return diffs
}
