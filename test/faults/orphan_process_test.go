package faults_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// The shop is killed (SIGKILL) while it places an order, after each of
// the order service's writes: the record, the event, the saga's start.
// Restarted on the same data dir, the order ends confirmed, never pending
// for ever: the record is an outbox its reconciler drains.
func TestKill9BetweenAnOrdersWritesThenRestart(t *testing.T) {
	for _, point := range []string{"recorded", "announced", "started"} {
		t.Run(point, func(t *testing.T) {
			data := t.TempDir()
			args := []string{"--data-dir", data, "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0"}
			shopAt := func(env ...string) (*proc, string) {
				p := launch(t, "shop", env, args...)
				var m []string
				sagatest.Poll(t, 60*time.Second, func() bool {
					m = shopLine.FindStringSubmatch(p.output())
					return m != nil || p.exited()
				}, func() string { return "shop did not start:\n" + p.output() })
				if m == nil {
					t.Fatalf("shop exited: %v\n%s", p.err, p.output())
				}
				return p, "http://" + m[1]
			}
			p, base := shopAt("CHOREO_CRASH=" + point + ":place:1")
			cust := shoptest.Register(t, base, "ada", "FR")
			code, res := shoptest.Call(t, "POST", base+"/api/orders", map[string]any{"customer_id": cust.ID,
				"items": []any{map[string]any{"sku": "sku-mug", "qty": 1}}, "card": "4242424242424242"}, cust.Auth()...)
			sagatest.Poll(t, 30*time.Second, p.exited, func() string { return "the shop was not killed" })
			if code == 202 || !strings.Contains(p.output(), "CHOREO_CRASH: kill -9 at "+point+" of place") {
				t.Fatalf("not killed at %s: %d %v\n%s", point, code, res, p.output())
			}
			_, base = shopAt("CHOREO_RECONCILE_AFTER=1s")
			var orders []any
			sagatest.Poll(t, 90*time.Second, func() bool {
				_, list := shoptest.Call(t, "GET", base+"/api/orders?customer_id="+cust.ID, nil, cust.Auth()...)
				orders, _ = list["orders"].([]any)
				return len(orders) == 1 && orders[0].(map[string]any)["status"] == "confirmed"
			}, func() string { return "the order cut short did not end confirmed" })
			_, st := shoptest.Call(t, "GET", base+"/api/stats", nil)
			if st["orders"] != 1.0 || st["orders_confirmed"] != 1.0 || st["payments_succeeded"] != 1.0 {
				t.Errorf("stats %v", st)
			}
		})
	}
}

var joinLine = regexp.MustCompile(`join it\s+go run ./services/cmd/shop --nats-url (\S+) --credentials (\S+)`)

// The README's two terminals, as processes: a shop without inventory, and
// a second shop that joins its server with its credentials and runs only
// inventory. Orders placed while the second is stopped wait at their
// reserve step; started again, it takes them and they confirm.
func TestTwoTerminalsOneServiceStoppedAndStarted(t *testing.T) {
	data := t.TempDir()
	main := launch(t, "shop", nil, "--data-dir", data, "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0", "--without", "inventory")
	var m, j []string
	sagatest.Poll(t, 60*time.Second, func() bool {
		m, j = shopLine.FindStringSubmatch(main.output()), joinLine.FindStringSubmatch(main.output())
		return m != nil && j != nil || main.exited()
	}, func() string { return "shop did not start:\n" + main.output() })
	if m == nil || j == nil {
		t.Fatalf("shop exited: %v\n%s", main.err, main.output())
	}
	base := "http://" + m[1]
	joined := regexp.MustCompile(`choreo shop is running: (inventory)\n`)
	second := []string{"--nats-url", j[1], "--credentials", j[2], "--only", "inventory", "--data-dir", t.TempDir()}
	inv, _ := start(t, "shop", joined, second...)
	cust := shoptest.Register(t, base, "ada", "FR")
	order := func() string {
		code, res := shoptest.Call(t, "POST", base+"/api/orders", map[string]any{"customer_id": cust.ID,
			"items": []any{map[string]any{"sku": "sku-mug", "qty": 1}}, "card": "4242424242424242"}, cust.Auth()...)
		if code != 202 {
			t.Fatalf("order: %d %v", code, res)
		}
		return res["id"].(string)
	}
	shoptest.AwaitStatus(t, base, cust, order(), "confirmed")
	inv.stop(t)
	var waiting []string
	for range 3 {
		waiting = append(waiting, order())
	}
	for _, id := range waiting {
		var o map[string]any
		sagatest.Poll(t, 60*time.Second, func() bool {
			_, o = shoptest.Call(t, "GET", base+"/api/orders/"+id, nil, cust.Auth()...)
			sg, _ := o["saga"].(map[string]any)
			steps, _ := sg["steps"].([]any)
			for _, s := range steps {
				if s := s.(map[string]any); s["name"] == "reserve" {
					return s["status"] == "running" && s["activity"] == "waiting" && o["status"] == "pending"
				}
			}
			return false
		}, func() string { return fmt.Sprintf("order %s is not waiting for inventory: %v", id, o) })
	}
	start(t, "shop", joined, second...)
	for _, id := range waiting {
		shoptest.AwaitStatus(t, base, cust, id, "confirmed")
	}
	t.Logf("inventory stopped in terminal 2: %d orders waited at reserve (activity waiting), all confirmed once it was back", len(waiting))
}
