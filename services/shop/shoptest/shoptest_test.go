package shoptest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// gateway is a fake of the shop's gateway: a customer is known once
// registered, with its token; orders end confirmed on their second read;
// every request but a registration needs the token.
func gateway(t *testing.T) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	var customers []any
	reads := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		if !(r.Method == "POST" && r.URL.Path == "/api/customers") && r.Header.Get("Authorization") != "Bearer tok-1" {
			w.WriteHeader(401)
			return
		}
		switch {
		case r.Method == "POST" && r.URL.Path == "/api/customers":
			if r.Header.Get("Content-Type") != "application/json" || body["email"] != "ada.lovelace@example.com" {
				w.WriteHeader(400)
				return
			}
			customers = append(customers, map[string]any{"id": "cus-1"})
			w.WriteHeader(201)
			_ = json.NewEncoder(w).Encode(map[string]any{"id": "cus-1", "token": "tok-1"})
		case r.URL.Path == "/api/customers/cus-1" && len(customers) == 1:
			_ = json.NewEncoder(w).Encode(customers[0])
		case r.Method == "POST" && r.URL.Path == "/api/orders":
			w.Header().Set("Idempotency-Key", r.Header.Get("Idempotency-Key"))
			w.WriteHeader(202)
			_ = json.NewEncoder(w).Encode(map[string]any{"id": "ord-1", "status": "pending"})
		case strings.HasPrefix(r.URL.Path, "/api/orders/"):
			id := strings.TrimPrefix(r.URL.Path, "/api/orders/")
			reads[id]++
			status := "pending"
			if reads[id] > 1 {
				status = "confirmed"
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "status": status})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRegisterPlaceAndAwait(t *testing.T) {
	base := gateway(t).URL
	cust := shoptest.Register(t, base, "Ada Lovelace", "FR")
	if cust != (shoptest.Customer{ID: "cus-1", Token: "tok-1"}) {
		t.Fatalf("customer %+v", cust)
	}
	id := shoptest.PlaceOrder(t, base, cust, "4242424242424242", shoptest.Item("sku-mug", 1))
	if got := shoptest.AwaitStatus(t, base, cust, id, "rejected", "confirmed"); got["status"] != "confirmed" {
		t.Errorf("order %v", got)
	}
	if code, _ := shoptest.Call(t, "GET", base+"/api/orders/"+id, nil); code != 401 {
		t.Errorf("the fake answers an order without a token: %d", code)
	}
	code, _, hdr, err := shoptest.Do(nil, "POST", base+"/api/orders", `{}`, append(cust.Auth(), "Idempotency-Key", "k1")...)
	if err != nil || code != 202 || hdr.Get("Idempotency-Key") != "k1" {
		t.Errorf("Do: %d %v %v", code, hdr, err)
	}
	if code, out := shoptest.Call(t, "GET", "http://127.0.0.1:1/", nil); code != 0 || out != nil {
		t.Errorf("Call to no server: %d %v", code, out)
	}
}

func TestMixKeepsItsShares(t *testing.T) {
	n := 0
	kinds := shoptest.Mix(100, func(int) int { n++; return n - 1 }) // 0..99
	count := map[shoptest.Kind]int{}
	for _, k := range kinds {
		count[k]++
	}
	want := map[shoptest.Kind]int{shoptest.Confirmed: 60, shoptest.Declined: 15, shoptest.SoldOut: 15, shoptest.Undelivered: 10}
	for k, w := range want {
		if count[k] != w {
			t.Errorf("kind %d: %d, want %d", k, count[k], w)
		}
	}
	if _, status := shoptest.Undelivered.Want(); status != "rejected" {
		t.Errorf("an undelivered order ends %q", status)
	}
}

func TestLogBufferTakesManyWriters(t *testing.T) {
	var b shoptest.LogBuffer
	logger := slog.New(slog.NewTextHandler(&b, nil))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { logger.Info("line", "n", i); b.Noticef("notice %d", i) })
	}
	wg.Wait()
	if got := strings.Count(b.String(), "\n"); got != 16 {
		t.Errorf("%d lines:\n%s", got, b.String())
	}
}

// recorder is a test that keeps its cleanups and failures.
type recorder struct {
	testing.TB
	cleanups []func()
	errs     []string
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) end() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestGoStopsAndReportsTheError(t *testing.T) {
	rec := &recorder{TB: t}
	quiet := shoptest.Go(rec, "quiet", func(ctx context.Context) error { <-ctx.Done(); return nil })
	if err := quiet.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-quiet.Done():
	default:
		t.Fatal("Done is open after Stop")
	}
	boom := errors.New("boom")
	failing := shoptest.Go(rec, "failing", func(context.Context) error { return fmt.Errorf("run: %w", boom) })
	<-failing.Done()
	if err := failing.Stop(); !errors.Is(err, boom) {
		t.Errorf("Stop = %v", err)
	}
	rec.end()
	if len(rec.errs) != 1 || rec.errs[0] != "failing: run: boom" {
		t.Errorf("the test was told %q, want the failing service's error once", rec.errs)
	}
}
