package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/gateway"
)

func placed(t *testing.T, rm *gateway.ReadModel, id string, at time.Time) {
	t.Helper()
	b, _ := json.Marshal(schemas.OrderPlaced{OrderID: id, CustomerID: "cus-1", Items: []schemas.Item{{SKU: "sku-mug", Qty: 1, UnitPrice: 100}},
		Total: 100, Currency: schemas.Currency, PlacedAt: at})
	if _, err := rm.Apply(schemas.TopicOrderPlaced, "evt-"+id, b); err != nil {
		t.Fatal(err)
	}
}

// walk reads every page of limit orders and returns their ids in order.
func walk(t *testing.T, rm *gateway.ReadModel, limit int, between func(page int)) []string {
	t.Helper()
	var ids []string
	var after *gateway.OrderKey
	for page := 0; ; page++ {
		rows, more := rm.OrdersPage("", after, limit)
		if len(rows) > limit || more && len(rows) != limit {
			t.Fatalf("page %d: %d rows of %d, more %v", page, len(rows), limit, more)
		}
		for _, r := range rows {
			ids = append(ids, r.ID)
		}
		if !more {
			return ids
		}
		last := rows[len(rows)-1]
		after = &gateway.OrderKey{PlacedAt: last.PlacedAt, ID: last.ID}
		if between != nil {
			between(page)
		}
	}
}

func TestOrdersPagesCoverEveryOrderOnceNewestFirst(t *testing.T) {
	rm := gateway.NewReadModel()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var want []string
	for i := range 103 {
		// Groups of three share a time: the id breaks the tie.
		id := fmt.Sprintf("ord-%03d", i)
		placed(t, rm, id, t0.Add(time.Duration(i/3)*time.Second))
		want = append(want, id)
	}
	slices.Reverse(want) // newest first, and the higher id first on a tie
	for _, limit := range []int{1, 3, 7, 50, 103, 500} {
		if got := walk(t, rm, limit, nil); !slices.Equal(got, want) {
			t.Errorf("limit %d: %v\nwant %v", limit, got, want)
		}
	}
	// Orders placed during a walk come before its start: the pages still
	// hold each earlier order once.
	n := 0
	got := walk(t, rm, 10, func(int) {
		n++
		placed(t, rm, fmt.Sprintf("ord-new-%d", n), t0.Add(time.Hour+time.Duration(n)*time.Second))
	})
	if !slices.Equal(got, want) {
		t.Errorf("walk with orders arriving: %v\nwant %v", got, want)
	}
}

func TestOrdersAPIPages(t *testing.T) {
	addr := startShop(t)
	base := "http://" + addr
	code, res, _ := send(t, "POST", base+"/api/customers", map[string]string{"Content-Type": jsonType}, customerJSON("Ada"))
	if code != 201 {
		t.Fatalf("register: %d %v", code, res)
	}
	cust := res["id"].(string)
	auth := map[string]string{"Authorization": "Bearer " + res["token"].(string)}
	sagatest.Poll(t, 20*time.Second, func() bool {
		code, _, _ := send(t, "GET", base+"/api/customers/"+cust, auth, nil)
		return code == 200
	}, func() string { return "the gateway does not know the customer" })
	var placedIDs []string
	for range 5 {
		b, _ := json.Marshal(map[string]any{"customer_id": cust, "items": []any{map[string]any{"sku": "sku-mug", "qty": 1}}, "card": "4242424242424242"})
		code, res, _ := send(t, "POST", base+"/api/orders", map[string]string{"Content-Type": jsonType, "Authorization": auth["Authorization"]}, b)
		if code != 202 {
			t.Fatalf("order: %d %v", code, res)
		}
		placedIDs = append(placedIDs, res["id"].(string))
	}
	// Once every order's event is in the read model, their places in the
	// listing stay put.
	sagatest.Poll(t, 30*time.Second, func() bool {
		_, s, _ := send(t, "GET", base+"/api/stats", nil, nil)
		return s["orders"] == 5.0
	}, func() string { return "the orders did not reach the read model" })

	var got []string
	cursor := ""
	for page := 0; page < 10; page++ {
		q := url.Values{"limit": {"2"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		code, res, _ := send(t, "GET", base+"/api/orders?"+q.Encode(), auth, nil)
		if code != 200 {
			t.Fatalf("page %d: %d %v", page, code, res)
		}
		for _, o := range res["orders"].([]any) {
			o := o.(map[string]any)
			for _, f := range []string{"id", "customer_id", "status", "total", "currency", "items", "placed_at", "saga", "rev"} {
				if _, ok := o[f]; !ok {
					t.Errorf("order without %q: %v", f, o)
				}
			}
			got = append(got, o["id"].(string))
		}
		next, more := res["next"].(string)
		if !more {
			break
		}
		cursor = next
	}
	slices.Sort(got)
	slices.Sort(placedIDs)
	if !slices.Equal(got, placedIDs) {
		t.Errorf("the pages hold %v, want each of %v once", got, placedIDs)
	}
	// The default page holds them all; a customer's filter still applies.
	if _, res, _ := send(t, "GET", base+"/api/orders?customer_id="+cust, auth, nil); len(res["orders"].([]any)) != 5 || res["next"] != nil {
		t.Errorf("default page: %v", res)
	}
	for _, q := range []string{"limit=0", "limit=501", "limit=x", "limit=-1", "cursor=!!", "cursor=" + url.QueryEscape("bm9wZQ")} {
		if code, res, _ := send(t, "GET", base+"/api/orders?"+q, auth, nil); code != 400 {
			t.Errorf("GET /api/orders?%s = %d %v, want 400", q, code, res)
		}
	}
}
