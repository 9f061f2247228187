package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/console"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/gateway"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// shopHarness runs every service in-process on an embedded server, each
// with its own context, so that a test can stop and start one.
type shopHarness struct {
	t    *testing.T
	srv  *sagatest.Server
	deps kit.Deps
	mail string
	base string
	gw   *gateway.Service
	// gwOpts are the gateway's options, for a test that starts it itself.
	gwOpts []gateway.Option
	logs   *shoptest.LogBuffer // every service's log lines, debug included
	// operator is the gateway's operator token: it reads every customer's
	// data. The token key stays the same when a test restarts the gateway,
	// so customers' tokens outlive it, as in the shop.
	operator string
	tokenKey []byte

	mu     sync.Mutex
	stops  map[string]func()
	owners map[string]shoptest.Customer // order id -> its customer, for await
}

var allServices = []string{"customer", "order", "payment", "inventory", "billing", "shipping", "carrier", "notification", "gateway"}

func newShop(t *testing.T, except ...string) *shopHarness {
	t.Helper()
	h := &shopHarness{t: t, srv: sagatest.NewServer(t), mail: filepath.Join(t.TempDir(), "mail"), stops: map[string]func(){}, logs: &shoptest.LogBuffer{},
		owners: map[string]shoptest.Customer{}, operator: console.NewToken(), tokenKey: []byte(console.NewToken())}
	nc, _ := h.srv.Connect()
	d, err := kit.NewDeps(context.Background(), nc, "e2e", nil)
	if err != nil {
		t.Fatal(err)
	}
	h.deps = d
	// Provision every bucket, as an operator would, so that /healthz is
	// 200 while a test keeps a service stopped.
	for _, b := range kit.Buckets {
		if _, err := kit.OpenStore(context.Background(), d.JS, b); err != nil {
			t.Fatal(err)
		}
	}
	skip := map[string]bool{}
	for _, s := range except {
		skip[s] = true
	}
	for _, name := range allServices {
		if !skip[name] {
			h.start(name)
		}
	}
	return h
}

// start runs one service until the test ends or stop(name).
func (h *shopHarness) start(name string) {
	h.t.Helper()
	nc, _ := h.srv.Connect()
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := kit.NewDeps(context.Background(), nc, name, logger)
	if err != nil {
		h.t.Fatal(err)
	}
	run := shop.Service(name, d, h.mail)
	if name == "gateway" {
		opts := append([]gateway.Option{gateway.WithOperatorToken(h.operator), gateway.WithCustomerTokens(h.tokenKey, 0)}, h.gwOpts...)
		h.gw = gateway.New(d, "127.0.0.1:0", opts...)
		run = h.gw.Run
	}
	svc := shoptest.Go(h.t, name, run) // its error fails the test
	stop := func() {
		_ = svc.Stop()
		nc.Close()
	}
	h.t.Cleanup(stop)
	h.mu.Lock()
	h.stops[name] = stop
	h.mu.Unlock()
	if name == "gateway" {
		select {
		case addr := <-h.gw.Addr():
			h.base = "http://" + addr
		case <-svc.Done():
			h.t.Fatalf("gateway: %v", svc.Err())
		}
		shoptest.AwaitHealth(h.t, h.base, 200, "")
	}
}

func (h *shopHarness) stop(name string) {
	h.mu.Lock()
	stop := h.stops[name]
	h.mu.Unlock()
	stop()
}

// do calls the gateway, with headers as name, value pairs (a customer's
// Auth, say), and decodes the JSON answer.
func (h *shopHarness) do(method, path string, body any, headers ...string) (int, map[string]any) {
	h.t.Helper()
	code, out, _, err := shoptest.Do(nil, method, h.base+path, body, headers...)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, out
}

// asOperator is the header of the operator's token, for do.
func (h *shopHarness) asOperator() []string { return shoptest.Bearer(h.operator) }

// doWith is do with request headers, answering the response's too.
func (h *shopHarness) doWith(method, path string, body any, headers map[string]string) (int, map[string]any, http.Header) {
	h.t.Helper()
	var hs []string
	for k, v := range headers {
		hs = append(hs, k, v)
	}
	code, out, hdr, err := shoptest.Do(nil, method, h.base+path, body, hs...)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, out, hdr
}

// register registers a customer and waits until the gateway knows it.
func (h *shopHarness) register(name, country string) shoptest.Customer {
	h.t.Helper()
	return shoptest.Register(h.t, h.base, name, country)
}

// order places an order for c, with c's token.
func (h *shopHarness) order(c shoptest.Customer, card string, items ...map[string]any) string {
	h.t.Helper()
	code, res := h.do("POST", "/api/orders", map[string]any{"customer_id": c.ID, "items": items, "card": card}, c.Auth()...)
	if code != 202 || res["status"] != "pending" {
		h.t.Fatalf("order: %d %v", code, res)
	}
	id := res["id"].(string)
	h.mu.Lock()
	h.owners[id] = c
	h.mu.Unlock()
	return id
}

// authFor is the header that reads order id: its customer's token when
// h.order placed it, else the operator's.
func (h *shopHarness) authFor(id string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.owners[id]; ok {
		return c.Auth()
	}
	return h.asOperator()
}

// await waits until the order has the status and returns its view.
func (h *shopHarness) await(id, status string, timeout time.Duration) map[string]any {
	h.t.Helper()
	var res map[string]any
	sagatest.Poll(h.t, timeout, func() bool {
		var code int
		code, res = h.do("GET", "/api/orders/"+id, nil, h.authFor(id)...)
		return code == 200 && res["status"] == status && res["saga"] != nil &&
			(status == "pending" || res["saga"].(map[string]any)["status"] != "running")
	}, func() string { return fmt.Sprintf("order %s: %v", id, res) })
	return res
}

func steps(o map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, s := range o["saga"].(map[string]any)["steps"].([]any) {
		m := s.(map[string]any)
		out[m["name"].(string)] = m
	}
	return out
}

func (h *shopHarness) mails() []string {
	entries, _ := os.ReadDir(h.mail)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
