package shop_test

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// scrape reads the shop's /metrics: each sample by its name and labels
// as written ({a="x",b="y"}, in the exposition's order).
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// The case: after known orders (two confirmed, one declined, one
// out of stock) the shop's /metrics counts them, and the admin listener
// rebuilds the gateway's read model.
func TestMetricsAfterKnownOrders(t *testing.T) {
	sh := shoptest.RunShop(t, shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), MetricsAddr: "127.0.0.1:0"})
	if sh.MetricsAddr == "" {
		t.Fatal("no metrics address")
	}
	cust := shoptest.Register(t, sh.Base, "ada", "FR")
	place := func(card string, qty int) string {
		t.Helper()
		code, res := shoptest.Call(t, "POST", sh.Base+"/api/orders", map[string]any{"customer_id": cust.ID,
			"items": []any{map[string]any{"sku": "sku-mug", "qty": qty}}, "card": card}, cust.Auth()...)
		if code != 202 {
			t.Fatalf("order: %d %v", code, res)
		}
		return res["id"].(string)
	}
	good := "4242424242424242"
	ids := []string{place(good, 1), place(good, 2), place(payment.DeclinedCard, 1), place(good, 600)}
	// The big order waits for its customer's confirmation (version 4),
	// then finds no stock: its charge is refunded.
	shoptest.AwaitWaiting(t, sh.Base, cust, ids[3], "charge", "customer")
	if code, res := shoptest.ConfirmPayment(t, sh.Base, cust, ids[3]); code >= 300 {
		t.Fatalf("confirm payment: %d %v", code, res)
	}
	for i, id := range ids {
		want := "confirmed"
		if i >= 2 {
			want = "rejected"
		}
		shoptest.AwaitStatus(t, sh.Base, cust, id, want)
	}
	want := map[string]float64{
		`choreo_sagas_started_total{flow="order",version="4"}`:                                                4,
		`choreo_sagas_ended_total{flow="order",status="completed",version="4"}`:                               2,
		`choreo_sagas_ended_total{flow="order",status="compensated",version="4"}`:                             2,
		`choreo_steps_handled_total{flow="order",outcome="done",phase="action",step="charge",version="4"}`:    2,
		`choreo_steps_handled_total{flow="order",outcome="waiting",phase="action",step="charge",version="4"}`: 1,
		`choreo_steps_handled_total{flow="order",outcome="failed",phase="action",step="charge",version="4"}`:  1,
		`choreo_steps_handled_total{flow="order",outcome="failed",phase="action",step="reserve",version="4"}`: 1,
		`choreo_steps_handled_total{flow="order",outcome="done",phase="action",step="confirm",version="4"}`:   2,
		`choreo_steps_failed_total{flow="order",outcome="failed",step="charge",version="4"}`:                  1,
		`choreo_steps_failed_total{flow="order",outcome="failed",step="reserve",version="4"}`:                 1,
		`choreo_compensations_total{flow="order",outcome="compensated",step="charge",version="4"}`:            1,
		`choreo_handler_duration_seconds_count{flow="order",phase="action",step="confirm",version="4"}`:       2,
		`choreo_handler_duration_seconds_count{flow="order",phase="compensation",step="charge",version="4"}`:  1,
		`choreo_dead_letter_stream_messages`:                                                                  0,
	}
	var got map[string]float64
	sagatest.Poll(t, 60*time.Second, func() bool {
		got = scrape(t, sh.MetricsAddr)
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				return false
			}
		}
		return idle(got)
	}, func() string {
		var b strings.Builder
		for k, v := range want {
			g, ok := got[k]
			if !ok || g != v {
				fmt.Fprintf(&b, "\n  %s = %v (present %v), want %v", k, g, ok, v)
			}
		}
		var choreo []string
		for k, v := range got {
			if strings.HasPrefix(k, "choreo_") && !strings.Contains(k, "_bucket") {
				choreo = append(choreo, fmt.Sprintf("%s %v", k, v))
			}
		}
		return "metrics differ:" + b.String() + "\nchoreo metrics:\n" + strings.Join(choreo, "\n")
	})
	// Every step's consumers are counted (and none has anything pending:
	// the poll waited for that).
	consumers := 0
	for k := range got {
		if strings.HasPrefix(k, "choreo_consumer_pending{") || strings.HasPrefix(k, "choreo_consumer_ack_pending{") {
			if strings.Contains(k, `stream="CHOREO"`) && strings.Contains(k, "charge") {
				consumers++
			}
		}
	}
	if consumers < 4 { // charge's action and compensation, pending and ack pending
		t.Errorf("%d counts of the charge step's consumers, want 4", consumers)
	}
	if got[`choreo_steps_retried_total{flow="order",phase="action",step="charge",version="4"}`] != 0 {
		t.Error("a retry was counted where none happened")
	}

	code, res := shoptest.Call(t, "POST", "http://"+sh.MetricsAddr+"/admin/rebuild", nil)
	if code != 200 || res["orders"] != float64(4) {
		t.Errorf("rebuild: %d %v, want 200 with 4 orders", code, res)
	}
	if code, _ := shoptest.Call(t, "POST", sh.Base+"/admin/rebuild", nil); code == 200 {
		t.Error("the public listener serves the admin's rebuild")
	}
}

// idle reports whether no consumer of the saga stream has anything
// pending or awaiting its acknowledgement.
func idle(got map[string]float64) bool {
	for k, v := range got {
		if (strings.HasPrefix(k, "choreo_consumer_pending{") || strings.HasPrefix(k, "choreo_consumer_ack_pending{")) &&
			strings.Contains(k, `stream="CHOREO"`) && v != 0 {
			return false
		}
	}
	return true
}

// A step no running service serves shows in the metrics of the others:
// without billing, the bill step has no runner attached (and, never
// having had one, no consumer for its triggers to wait in), while the
// steps whose services run have theirs attached.
func TestMetricsShowAStepWithNoRunner(t *testing.T) {
	sh := shoptest.RunShop(t, shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), MetricsAddr: "127.0.0.1:0",
		Without: []string{"billing"}})
	cust := shoptest.Register(t, sh.Base, "ada", "FR")
	code, res := shoptest.Call(t, "POST", sh.Base+"/api/orders", map[string]any{"customer_id": cust.ID,
		"items": []any{map[string]any{"sku": "sku-mug", "qty": 1}}, "card": "4242424242424242"}, cust.Auth()...)
	if code != 202 {
		t.Fatalf("order: %d %v", code, res)
	}
	bill := `{flow="order",step="bill",version="4"}`
	reserve := `{flow="order",step="reserve",version="4"}`
	var got map[string]float64
	sagatest.Poll(t, 60*time.Second, func() bool {
		got = scrape(t, sh.MetricsAddr)
		_, billed := got["choreo_step_pending"+bill]
		_, reserved := got["choreo_step_pending"+reserve]
		return billed && reserved && got["choreo_step_attached"+reserve] == 1
	}, func() string {
		var lines []string
		for k, v := range got {
			if strings.HasPrefix(k, "choreo_step_") {
				lines = append(lines, fmt.Sprintf("%s %v", k, v))
			}
		}
		return "step metrics:\n" + strings.Join(lines, "\n")
	})
	if a, ok := got["choreo_step_attached"+bill]; !ok || a != 0 {
		t.Errorf("choreo_step_attached%s = %v (present %v), want 0: no billing service runs", bill, a, ok)
	}
}
