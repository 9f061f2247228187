// Package faults runs the shop's real binaries as OS processes: killed
// with SIGKILL and restarted, and each service alone against a server.
package faults_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shop/shoptest"
	"github.com/choreo-go/choreo/test/checker"
)

// start runs a binary and waits for the line want matches in its output,
// returning the first group.
func start(t *testing.T, name string, want *regexp.Regexp, args ...string) (*proc, string) {
	t.Helper()
	p := launch(t, name, waitEnv, args...)
	var m []string
	sagatest.Poll(t, 60*time.Second, func() bool {
		m = want.FindStringSubmatch(p.output())
		return m != nil || p.exited()
	}, func() string { return name + " did not start:\n" + p.output() })
	if m == nil {
		t.Fatalf("%s exited: %v\n%s", name, p.err, p.output())
	}
	return p, m[1]
}

// stop sends SIGTERM and wants a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.term(30 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, p.output())
	}
}

var shopLine = regexp.MustCompile(`web UI and API\s+http://(\S+)`)
var natsLine = regexp.MustCompile(`nats-server\s+(nats://\S+)`)

func TestKill9WithSagasInFlightThenRestart(t *testing.T) {
	data := t.TempDir()
	args := []string{"--data-dir", data, "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0"}
	shop, addr := start(t, "shop", shopLine, args...)
	base := "http://" + addr
	cust := shoptest.Register(t, base, "ada", "FR")
	var ids []string
	for i := range 40 {
		code, res := shoptest.Call(t, "POST", base+"/api/orders", map[string]any{"customer_id": cust.ID,
			"items": []any{map[string]any{"sku": "sku-mug", "qty": 1 + i%3}}, "card": "4242424242424242"}, cust.Auth()...)
		if code != 202 {
			t.Fatalf("order %d: %d %v", i, code, res)
		}
		ids = append(ids, res["id"].(string))
	}
	if distinct := len(slices.Compact(slices.Sorted(slices.Values(ids)))); distinct != len(ids) {
		t.Fatalf("%d distinct order ids for %d orders", distinct, len(ids))
	}
	shop.kill() // SIGKILL: no cleanup at all
	killedAt := time.Now()

	again, addr := start(t, "shop", shopLine, args...)
	base = "http://" + addr
	for _, id := range ids {
		shoptest.AwaitStatus(t, base, cust, id, "confirmed")
	}
	// Every accepted order was charged exactly once, kill or not: the
	// payment service's own ledger says so.
	m := natsLine.FindStringSubmatch(again.output())
	if m == nil {
		t.Fatalf("no nats address in:\n%s", again.output())
	}
	// The embedded server takes no anonymous clients: the admin's seed.
	nc, _ := shoptest.Connect(t, m[1], shoptest.Seed(t, filepath.Join(data, "credentials"), "admin"))
	d, err := kit.NewDeps(context.Background(), nc, "checker", nil)
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := payment.Ledger(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	charged := map[string]int{}
	for _, c := range ledger {
		charged[c.OrderID] += c.Charges
		if c.Refunds != 0 {
			t.Errorf("refund of %s", c.OrderID)
		}
	}
	for _, id := range ids {
		if charged[id] != 1 {
			t.Errorf("order %s charged %d times", id, charged[id])
		}
	}
	// An order is confirmed at the pivot; its saga ends once the carrier
	// delivered its parcel (order flow version 4).
	shoptest.AwaitEnded(context.Background(), d, ids, time.Minute, 200*time.Millisecond)
	rep, err := checker.Check(context.Background(), d, ids)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Summary(1))
	if !rep.OK() {
		t.Errorf("invariants broken: %v", rep.Problems)
	}
	_, res := shoptest.Call(t, "GET", base+"/api/stats", nil)
	if res["orders"] != 40.0 || res["orders_confirmed"] != 40.0 || res["payments_succeeded"] != 40.0 || res["refunds"] != 0.0 {
		t.Errorf("stats after the restart: %v", res)
	}
	// Some sagas were in flight at the kill and finished after the restart.
	resumed := 0
	for _, id := range ids {
		_, o := shoptest.Call(t, "GET", base+"/api/orders/"+id, nil, cust.Auth()...)
		saga := o["saga"].(map[string]any)
		ended, _ := time.Parse(time.RFC3339Nano, saga["ended_at"].(string))
		if ended.After(killedAt) {
			resumed++
		}
	}
	t.Logf("%d of %d sagas were in flight at the kill and finished after the restart", resumed, len(ids))
	if resumed == 0 {
		t.Error("no saga was in flight at the kill: the test proves nothing")
	}
}

var gatewayLine = regexp.MustCompile(`gateway listening on http://(\S+)`)

func TestEachServiceRunsAlone(t *testing.T) {
	srv := sagatest.NewServer(t)
	url := srv.ClientURL()
	mail := t.TempDir()
	var procs []*proc
	for _, svc := range []string{"customer", "order", "payment", "inventory", "billing", "shipping", "carrier"} {
		p, _ := start(t, svc, regexp.MustCompile(`(running)`), "--nats", url)
		procs = append(procs, p)
	}
	p, _ := start(t, "notification", regexp.MustCompile(`(running)`), "--nats", url, "--mail-dir", mail)
	procs = append(procs, p)
	gw, addr := start(t, "gateway", gatewayLine, "--nats", url, "--http-addr", "127.0.0.1:0")
	procs = append(procs, gw)
	base := "http://" + addr
	shoptest.AwaitHealth(t, base, 200, "")
	cust := shoptest.Register(t, base, "ada", "FR")
	code, res := shoptest.Call(t, "POST", base+"/api/orders", map[string]any{"customer_id": cust.ID,
		"items": []any{map[string]any{"sku": "sku-tee", "qty": 1}}, "card": "4242424242424242"}, cust.Auth()...)
	if code != 202 {
		t.Fatalf("order: %d %v", code, res)
	}
	id := res["id"].(string)
	shoptest.AwaitStatus(t, base, cust, id, "confirmed")
	sagatest.Poll(t, 20*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(mail, "confirmed-"+id+".eml"))
		return err == nil
	}, func() string { return "no confirmation e-mail" })
	for _, p := range procs {
		t0 := time.Now()
		p.stop(t) // SIGTERM: each drains and exits 0
		t.Logf("%s stopped in %v", filepath.Base(p.cmd.Path), time.Since(t0).Round(time.Millisecond))
	}
}

func TestBadFlagStopsStartup(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"shop", []string{"--http-addr", "nope", "--nats-addr", "127.0.0.1:0"}, "--http-addr \"nope\": want host:port"},
		{"shop", []string{"--nats-addr", "127.0.0.1:x"}, "--nats-addr \"127.0.0.1:x\": bad port"},
		{"shop", []string{"--http-addr", "127.0.0.1:99999", "--nats-addr", "127.0.0.1:0"}, "bad port"},
		{"shop", []string{"--max-websockets", "0", "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0"}, "gateway: invalid option: max websockets 0"},
		{"shop", []string{"--allowed-hosts", "http://shop.example.com/", "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0"}, "allowed host \"http://shop.example.com/\""},
		{"shop", []string{"--bogus"}, "flag provided but not defined"},
		{"payment", []string{"--nats", "nats://127.0.0.1:1"}, "connect"},
		{"payment", []string{"--nkey", "/nonexistent/payment.nk"}, "--nkey"},
		{"payment", []string{"--user", "payment"}, "needs a password"},
		{"payment", []string{"--nkey", "/dev/null", "--user", "payment"}, "not several"},
		{"payment", []string{"--tls-ca", "/nonexistent-ca.pem"}, "payment: --tls-ca: open /nonexistent-ca.pem"},
		{"payment", []string{"--tls-cert", "/nonexistent-cert.pem"}, "--tls-cert and --tls-key go together"},
		{"shop", []string{"--tls-cert", "/nonexistent-cert.pem", "--tls-key", "/nonexistent-key.pem", "--nats-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, "shop: tls: "},
	} {
		dir := t.TempDir()
		cmd := exec.Command(filepath.Join(bin, tc.name), append([]string{"--data-dir", dir}, tc.args...)...)
		if tc.name != "shop" {
			cmd = exec.Command(filepath.Join(bin, tc.name), tc.args...)
		}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s %v: %v\n%s", tc.name, tc.args, err, out)
		}
	}
}
