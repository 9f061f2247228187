package shop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/shop"
)

// running is a shop run in this process until stop.
type running struct {
	*shop.Shop
	stop func()
}

func runShop(t *testing.T, cfg shop.Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *shop.Shop, 1)
	done := make(chan error, 1)
	go func() { done <- shop.Run(ctx, cfg, func(s *shop.Shop) { ready <- s }) }()
	var sh *shop.Shop
	select {
	case sh = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("shop: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("shop did not start")
	}
	stopped := false
	r := &running{Shop: sh, stop: func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shop: %v", err)
		}
	}}
	t.Cleanup(r.stop)
	return r
}

// call sends a request (with headers, as name, value pairs) and decodes
// the JSON answer.
func call(t *testing.T, method, url string, body any, headers ...string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (r *running) base() string { return "http://" + r.HTTPAddr }

func (r *running) awaitHealth(t *testing.T, code int, reason string) map[string]any {
	t.Helper()
	var got int
	var res map[string]any
	sagatest.Poll(t, 60*time.Second, func() bool {
		got, res = call(t, "GET", r.base()+"/healthz", nil)
		return got == code && (reason == "" || res["reason"] == reason)
	}, func() string { return "healthz: " + http.StatusText(got) + " " + jsonString(res) })
	return res
}

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

func (r *running) register(t *testing.T) string {
	t.Helper()
	code, res := call(t, "POST", r.base()+"/api/customers", map[string]any{"name": "ada", "email": "ada@example.com",
		"address": map[string]string{"line1": "1 Main St", "city": "Paris", "postcode": "75001", "country": "FR"}})
	if code != 201 {
		t.Fatalf("register: %d %v", code, res)
	}
	id := res["id"].(string)
	sagatest.Poll(t, 30*time.Second, func() bool {
		code, _ := call(t, "POST", r.base()+"/api/orders", map[string]any{"customer_id": id, "items": []any{}, "card": "1"})
		return code == 400 // known customer, empty order
	}, func() string { return "the gateway never learned the customer" })
	return id
}

func (r *running) order(t *testing.T, cust string, headers ...string) (int, map[string]any) {
	t.Helper()
	return call(t, "POST", r.base()+"/api/orders", map[string]any{"customer_id": cust,
		"items": []any{map[string]any{"sku": "sku-mug", "qty": 1}}, "card": "4242424242424242"}, headers...)
}

func (r *running) awaitOrder(t *testing.T, id string, status ...string) map[string]any {
	t.Helper()
	var res map[string]any
	sagatest.Poll(t, 60*time.Second, func() bool {
		_, res = call(t, "GET", r.base()+"/api/orders/"+id, nil)
		for _, s := range status {
			if res != nil && res["status"] == s {
				return true
			}
		}
		return false
	}, func() string { return "order " + id + ": " + jsonString(res) })
	return res
}

// adminSeed is the option that connects as the shop's admin.
func adminSeed(t *testing.T, sh *shop.Shop) nats.Option {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(filepath.Join(sh.Credentials, shop.Admin+".nk"))
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

func adminJS(t *testing.T, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
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
	sh := runShop(t, first)
	sh.awaitHealth(t, 200, "") // the admin provisioned billing's bucket
	cust := sh.register(t)
	code, res := sh.order(t, cust)
	if code != 202 {
		t.Fatalf("order: %d %v", code, res)
	}
	accepted := res["id"].(string)
	sagatest.Poll(t, 30*time.Second, func() bool {
		_, o := call(t, "GET", sh.base()+"/api/orders/"+accepted, nil)
		return o != nil && o["saga"] != nil
	}, func() string { return "the accepted order has no saga" })

	js := adminJS(t, sh.NATSURL, adminSeed(t, sh.Shop))
	if err := js.DeleteStream(context.Background(), "CHOREO"); err != nil {
		t.Fatal(err)
	}
	h := sh.awaitHealth(t, 503, "stream CHOREO missing")
	if h["status"] != "unavailable" {
		t.Errorf("healthz: %v", h)
	}
	code, res = sh.order(t, cust, "Idempotency-Key", "while-missing")
	if msg, _ := res["error"].(string); code != 503 || !strings.Contains(msg, order.KeySpent) {
		t.Errorf("order while CHOREO is missing: %d %v, want 503 saying the key is spent", code, res)
	}
	// Its key is spent: the same request again gets the same answer, and
	// places nothing.
	if again, res2 := sh.order(t, cust, "Idempotency-Key", "while-missing"); again != 503 || res2["error"] != res["error"] {
		t.Errorf("the same key again: %d %v, want the first answer %v", again, res2, res)
	}
	// The refused order was announced and rejected: find it by customer.
	var refused string
	sagatest.Poll(t, 30*time.Second, func() bool {
		_, list := call(t, "GET", sh.base()+"/api/orders?customer_id="+cust, nil)
		orders, _ := list["orders"].([]any)
		for _, o := range orders {
			if m := o.(map[string]any); m["id"] != accepted && m["status"] == "rejected" {
				refused = m["id"].(string)
				return strings.Contains(m["reason"].(string), "could not start the order")
			}
		}
		return false
	}, func() string { return "the refused order was not rejected with the reason" })
	if refused != order.KeyedID(cust, "while-missing") {
		t.Errorf("the refused order is %s, want the key's %s", refused, order.KeyedID(cust, "while-missing"))
	}
	sh.stop()

	sh = runShop(t, cfg)
	sh.awaitHealth(t, 200, "")
	sh.awaitOrder(t, accepted, "confirmed")
	sh.awaitOrder(t, refused, "rejected")
	code, res = sh.order(t, cust)
	if code != 202 {
		t.Fatalf("order after the restart: %d %v", code, res)
	}
	sh.awaitOrder(t, res["id"].(string), "confirmed")
	_, list := call(t, "GET", sh.base()+"/api/orders?customer_id="+cust, nil)
	if n := len(list["orders"].([]any)); n != 3 {
		t.Errorf("%d orders, want 3", n)
	}
	for _, o := range list["orders"].([]any) {
		if st := o.(map[string]any)["status"]; st == "pending" {
			t.Errorf("an order stays pending: %v", o)
		}
	}
}
