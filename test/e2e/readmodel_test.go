package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// stockOf reads a product's stock from the gateway's catalog (-1: not
// known yet).
func (h *shopHarness) stockOf(sku string) int {
	h.t.Helper()
	code, res := h.do("GET", "/api/catalog", nil)
	if code != 200 {
		h.t.Fatalf("GET /api/catalog: %d %v", code, res)
	}
	for _, it := range res["items"].([]any) {
		it := it.(map[string]any)
		if it["sku"] == sku {
			if it["stock"] == nil {
				return -1
			}
			return int(it["stock"].(float64))
		}
	}
	h.t.Fatalf("no %s in the catalog: %v", sku, res)
	return 0
}

// Every GET of the gateway answers from its own read models (built from
// events) or the sagas' log: with inventory, customer or payment stopped,
// each still answers 200 and the same thing. Only the front door's
// commands need their owner.
func TestEveryGetAnswersWhileAServiceIsDown(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	id := h.order(ada, okCard, shoptest.Item("sku-mug", 2))
	h.await(id, "confirmed", 30*time.Second)
	// The stock the gateway shows comes from inventory's StockChanged.
	sagatest.Poll(t, 10*time.Second, func() bool { return h.stockOf("sku-mug") == 498 },
		func() string { return fmt.Sprintf("sku-mug stock %d, want 498", h.stockOf("sku-mug")) })
	// Everyone's data with the operator's token, ada's with hers.
	asAda := map[string]bool{"/api/orders?customer_id=" + ada.ID: true, "/api/orders/" + id: true, "/api/customers/" + ada.ID: true}
	gets := []string{"/api/catalog", "/api/stats", "/api/customers", "/api/orders", "/api/orders?customer_id=" + ada.ID,
		"/api/orders/" + id, "/api/customers/" + ada.ID, "/api/flow", "/healthz"}
	answers := func() map[string]any {
		out := map[string]any{}
		for _, p := range gets {
			auth := h.asOperator()
			if asAda[p] {
				auth = ada.Auth()
			}
			code, res := h.do("GET", p, nil, auth...)
			if code != 200 {
				t.Errorf("GET %s: %d %v", p, code, res)
			}
			out[p] = res
		}
		resp, err := http.Get(h.base + "/")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(page) == 0 {
			t.Errorf("GET /: %d", resp.StatusCode)
		}
		return out
	}
	before := answers()
	for _, svc := range []string{"inventory", "customer", "payment"} {
		t.Run(svc+" down", func(t *testing.T) {
			h.stop(svc)
			if got := answers(); !reflect.DeepEqual(got, before) {
				t.Errorf("with %s down the answers changed:\n%v\nwere\n%v", svc, got, before)
			}
			t.Logf("%s down: %d GETs answered 200 and unchanged", svc, len(gets)+1)
			h.start(svc)
		})
	}
	// All back: an order goes through and the stock the gateway shows
	// follows it.
	var again string
	sagatest.Poll(t, 20*time.Second, func() bool { // payment answers once it has started again
		code, res := h.do("POST", "/api/orders", map[string]any{"customer_id": ada.ID, "items": []any{shoptest.Item("sku-mug", 1)}, "card": okCard}, ada.Auth()...)
		again, _ = res["id"].(string)
		return code == 202
	}, func() string { return "payment does not take orders again" })
	h.await(again, "confirmed", 30*time.Second)
	sagatest.Poll(t, 10*time.Second, func() bool { return h.stockOf("sku-mug") == 497 },
		func() string { return fmt.Sprintf("sku-mug stock %d, want 497", h.stockOf("sku-mug")) })
}
