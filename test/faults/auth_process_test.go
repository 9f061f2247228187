package faults_test

import (
	"context"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/internal/embedded"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// Each service binary takes its own identity (--nkey) on a server that
// accepts only the shop's identities, with the permissions derived from
// the flow: after the admin provisions, the shop takes and confirms an
// order with every service a process of its own.
func TestEachServiceRunsAloneOnItsOwnIdentity(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "credentials")
	ids, _, err := shop.Identities(creds)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Users: ids})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	url := srv.ClientURL()
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected")
	}
	nc, _ := shoptest.Connect(t, url, shoptest.Seed(t, creds, shop.Admin))
	if _, err := shop.Provision(context.Background(), nc, nil); err != nil {
		t.Fatal(err)
	}
	mail := t.TempDir()
	var procs []*proc
	running := regexp.MustCompile(`(running)`)
	for _, svc := range []string{"customer", "order", "payment", "inventory", "billing", "shipping", "carrier", "notification"} {
		args := []string{"--nats", url, "--nkey", embedded.SeedFile(creds, svc)}
		if svc == "notification" {
			args = append(args, "--mail-dir", mail)
		}
		p, _ := start(t, svc, running, args...)
		procs = append(procs, p)
	}
	gw, addr := start(t, "gateway", gatewayLine, "--nats", url, "--nkey", embedded.SeedFile(creds, "gateway"), "--http-addr", "127.0.0.1:0")
	procs = append(procs, gw)
	base := "http://" + addr
	shoptest.AwaitHealth(t, base, 200, "")
	cust := shoptest.Register(t, base, "ada", "FR")
	for card, want := range map[string]string{"4242424242424242": "confirmed", "4000000000000002": "rejected"} {
		code, res := shoptest.Call(t, "POST", base+"/api/orders", map[string]any{"customer_id": cust.ID,
			"items": []any{map[string]any{"sku": "sku-tee", "qty": 1}}, "card": card}, cust.Auth()...)
		if code != 202 {
			t.Fatalf("order: %d %v", code, res)
		}
		shoptest.AwaitStatus(t, base, cust, res["id"].(string), want)
	}
	for _, p := range procs {
		p.stop(t)
	}
}
