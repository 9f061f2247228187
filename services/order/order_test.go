package order_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/order"
)

func req(t *testing.T, js string) order.PlaceRequest {
	t.Helper()
	var r order.PlaceRequest
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

const card = `{"token":"tok_ABCDEFGHIJKLMNOPQRSTUVWXYZ","brand":"visa","last4":"4242"}`

func TestPrice(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o, err := order.Price("ord-1", req(t, `{"customer_id":"cus-1","items":[{"sku":"sku-mug","qty":2},{"sku":"sku-tee","qty":1}],"card":`+card+`}`), now)
	if err != nil || o.Total != 2*1250+2200 || o.Card.Token != "tok_ABCDEFGHIJKLMNOPQRSTUVWXYZ" || len(o.Items) != 2 || o.Items[0].UnitPrice != 1250 {
		t.Fatalf("Price = %+v, %v", o, err)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"no customer", `{"items":[{"sku":"sku-mug","qty":1}],"card":` + card + `}`, "customer_id"},
		{"no items", `{"customer_id":"c","items":[],"card":` + card + `}`, "at least one item"},
		{"no card", `{"customer_id":"c","items":[{"sku":"sku-mug","qty":1}]}`, "card is required"},
		{"a card number for a token", `{"customer_id":"c","items":[{"sku":"sku-mug","qty":1}],"card":{"token":"4242424242424242","brand":"visa","last4":"4242"}}`, "/card/token"},
		{"unknown sku", `{"customer_id":"c","items":[{"sku":"sku-x","qty":1}],"card":` + card + `}`, "unknown sku"},
		{"too many", `{"customer_id":"c","items":[{"sku":"sku-mug","qty":1001}],"card":` + card + `}`, "quantity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := order.Price("ord-1", req(t, tc.body), now)
			var bad kit.BadRequest
			if !errors.As(err, &bad) || !strings.Contains(bad.Msg, tc.want) {
				t.Errorf("Price = %v, want a bad request about %q", err, tc.want)
			}
		})
	}
}
