package shop_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// The two-terminal use: one shop embeds the server and runs every service
// but inventory; another joins it over the network (--nats-url) with the
// first one's credentials and runs only inventory. Stopping the second
// leaves orders waiting at their reserve step; starting it again finishes
// them.
func TestAShopJoinsAnotherAndRunsOneService(t *testing.T) {
	dir := t.TempDir()
	main := shoptest.RunShop(t, shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: dir, Without: []string{"inventory"}})
	shoptest.AwaitHealth(t, main.Base, 200, "")
	join := shop.Config{NATSURL: main.NATSURL, Credentials: main.Credentials, Only: []string{"inventory"}, DataDir: t.TempDir()}
	inv := shoptest.RunShop(t, join)
	if inv.HTTPAddr != "" || strings.Join(inv.Running, ",") != "inventory" {
		t.Fatalf("the joining shop runs %v at %q", inv.Running, inv.HTTPAddr)
	}
	cust := shoptest.Register(t, main.Base, "ada", "FR")
	code, res := placeMug(t, main, cust)
	if code != 202 {
		t.Fatalf("order: %d %v", code, res)
	}
	shoptest.AwaitStatus(t, main.Base, cust, res["id"].(string), "confirmed")

	_ = inv.Stop() // an error fails the test at its cleanup
	var waiting []string
	for range 3 {
		code, res := placeMug(t, main, cust)
		if code != 202 {
			t.Fatalf("order with inventory stopped: %d %v", code, res)
		}
		waiting = append(waiting, res["id"].(string))
	}
	for _, id := range waiting {
		sagatest.Poll(t, 30*time.Second, func() bool {
			_, o := shoptest.Call(t, "GET", main.Base+"/api/orders/"+id, nil, cust.Auth()...)
			return o["status"] == "pending" && stepOf(o, "reserve")["status"] == "running" && stepOf(o, "book")["status"] == "completed"
		}, func() string {
			_, o := shoptest.Call(t, "GET", main.Base+"/api/orders/"+id, nil, cust.Auth()...)
			return "not waiting at reserve: " + shoptest.JSON(o)
		})
	}
	shoptest.RunShop(t, join)
	for _, id := range waiting {
		shoptest.AwaitStatus(t, main.Base, cust, id, "confirmed")
	}
	t.Logf("inventory stopped in the joined shop: %d orders waited at reserve, all confirmed once it was back", len(waiting))
}

func stepOf(o map[string]any, name string) map[string]any {
	sg, _ := o["saga"].(map[string]any)
	steps, _ := sg["steps"].([]any)
	for _, s := range steps {
		if m := s.(map[string]any); m["name"] == name {
			return m
		}
	}
	return map[string]any{}
}

// A bad selection or an external server's options without one stops
// start-up with one line.
func TestShopRefusesABadSelection(t *testing.T) {
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "customer.nk"), []byte("not a seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  shop.Config
		want string
	}{
		{"unknown service", shop.Config{Only: []string{"invntory"}}, `--only: no service "invntory"`},
		{"both lists", shop.Config{Only: []string{"order"}, Without: []string{"billing"}}, "--only or --without, not both"},
		{"nothing left", shop.Config{Without: shop.Services}, "no service to run"},
		{"credentials without a server", shop.Config{Credentials: empty}, "give --nats-url too"},
		{"a service without its seed", shop.Config{NATSURL: "nats://127.0.0.1:1", Credentials: empty, Only: []string{"order"}}, "no seed for order"},
		{"a bad seed", shop.Config{NATSURL: "nats://127.0.0.1:1", Credentials: empty, Only: []string{"customer"}}, "not an nkey seed file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.HTTPAddr, cfg.NATSAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := shop.Run(ctx, cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Run = %v, want one line about %q", err, tc.want)
			}
		})
	}
}
