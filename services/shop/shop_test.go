package shop_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// placeMug places an order of one mug for cust (with headers, as name,
// value pairs) and answers the gateway's status and answer.
func placeMug(t *testing.T, sh *shoptest.Shop, cust shoptest.Customer, headers ...string) (int, map[string]any) {
	t.Helper()
	return shoptest.Call(t, "POST", sh.Base+"/api/orders", map[string]any{"customer_id": cust.ID,
		"items": []any{shoptest.Item("sku-mug", 1)}, "card": "4242424242424242"}, append(cust.Auth(), headers...)...)
}

// The case: CHOREO is deleted under a running shop. /healthz says
// so (503 with the reason), an order placed meanwhile is refused with a
// 503 and rejected (not left pending), and a restart on the same data dir
// recreates the stream, starts again the saga of an order accepted before
// the delete (lost with the stream), and takes new orders.
func TestDeletedStreamIsLoudAndARestartRecovers(t *testing.T) {
	cfg := shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir()}
	// Without billing, an accepted order's saga waits at its bill step.
	first := cfg
	first.Without = []string{"billing"}
	sh := shoptest.RunShop(t, first)
	shoptest.AwaitHealth(t, sh.Base, 200, "") // the admin provisioned billing's bucket
	cust := shoptest.Register(t, sh.Base, "ada", "FR")
	code, res := placeMug(t, sh, cust)
	if code != 202 {
		t.Fatalf("order: %d %v", code, res)
	}
	accepted := res["id"].(string)
	sagatest.Poll(t, 30*time.Second, func() bool {
		_, o := shoptest.Call(t, "GET", sh.Base+"/api/orders/"+accepted, nil, cust.Auth()...)
		return o != nil && o["saga"] != nil
	}, func() string { return "the accepted order has no saga" })

	_, js := shoptest.Connect(t, sh.NATSURL, shoptest.Seed(t, sh.Credentials, shop.Admin))
	if err := js.DeleteStream(context.Background(), "CHOREO"); err != nil {
		t.Fatal(err)
	}
	h := shoptest.AwaitHealth(t, sh.Base, 503, "stream CHOREO missing")
	if h["status"] != "unavailable" {
		t.Errorf("healthz: %v", h)
	}
	code, res = placeMug(t, sh, cust, "Idempotency-Key", "while-missing")
	if msg, _ := res["error"].(string); code != 503 || !strings.Contains(msg, order.KeySpent) {
		t.Errorf("order while CHOREO is missing: %d %v, want 503 saying the key is spent", code, res)
	}
	// Its key is spent: the same request again gets the same answer, and
	// places nothing.
	if again, res2 := placeMug(t, sh, cust, "Idempotency-Key", "while-missing"); again != 503 || res2["error"] != res["error"] {
		t.Errorf("the same key again: %d %v, want the first answer %v", again, res2, res)
	}
	// The refused order was announced and rejected: find it by customer.
	var refused string
	sagatest.Poll(t, 30*time.Second, func() bool {
		_, list := shoptest.Call(t, "GET", sh.Base+"/api/orders?customer_id="+cust.ID, nil, cust.Auth()...)
		orders, _ := list["orders"].([]any)
		for _, o := range orders {
			if m := o.(map[string]any); m["id"] != accepted && m["status"] == "rejected" {
				refused = m["id"].(string)
				return strings.Contains(m["reason"].(string), "could not start the order")
			}
		}
		return false
	}, func() string { return "the refused order was not rejected with the reason" })
	if refused != order.KeyedID(cust.ID, "while-missing") {
		t.Errorf("the refused order is %s, want the key's %s", refused, order.KeyedID(cust.ID, "while-missing"))
	}
	_ = sh.Stop() // an error fails the test at its cleanup

	sh = shoptest.RunShop(t, cfg)
	shoptest.AwaitHealth(t, sh.Base, 200, "")
	shoptest.AwaitStatus(t, sh.Base, cust, accepted, "confirmed")
	shoptest.AwaitStatus(t, sh.Base, cust, refused, "rejected")
	code, res = placeMug(t, sh, cust)
	if code != 202 {
		t.Fatalf("order after the restart: %d %v", code, res)
	}
	shoptest.AwaitStatus(t, sh.Base, cust, res["id"].(string), "confirmed")
	_, list := shoptest.Call(t, "GET", sh.Base+"/api/orders?customer_id="+cust.ID, nil, cust.Auth()...)
	if n := len(list["orders"].([]any)); n != 3 {
		t.Errorf("%d orders, want 3", n)
	}
	for _, o := range list["orders"].([]any) {
		if st := o.(map[string]any)["status"]; st == "pending" {
			t.Errorf("an order stays pending: %v", o)
		}
	}
}
