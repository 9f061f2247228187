package security_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// The attacks on customers' data over the shop's HTTP API, by an outsider
// (no token, a made-up or altered token) and by another customer (a good
// token, someone else's data): each is refused with a 401 or a 403 that
// says why, and the answer holds none of the victim's data.
func TestCustomerDataNeedsTheCustomersToken(t *testing.T) {
	s := theShop(t)
	base := "http://" + s.HTTPAddr
	ada := shoptest.Register(t, base, "Ada Victim", "FR")
	eve := shoptest.Register(t, base, "Eve Attacker", "DE")
	order := shoptest.PlaceOrder(t, base, ada, "4242424242424242", shoptest.Item("sku-mug", 1))
	shoptest.AwaitStatus(t, base, ada, order, "confirmed")

	// What Eve must never see of Ada: her id's data, name, e-mail, street.
	secrets := []string{shoptest.Email("Ada Victim"), "Ada Victim", "1 Main Street", order}
	altered := ada.Token[:len(ada.Token)-2] + "xx"
	swapped := strings.Replace(eve.Token, eve.ID, ada.ID, 1) // Eve's signature, Ada's id
	for _, tc := range []struct {
		name, method, path string
		body               any
		auth               []string
		code               int
		want               string
	}{
		{"list every customer without a token", "GET", "/api/customers", nil, nil, 401, "needs a token"},
		{"list every customer as a customer", "GET", "/api/customers", nil, eve.Auth(), 403, "operator"},
		{"list every order without a token", "GET", "/api/orders", nil, nil, 401, "needs a token"},
		{"list another customer's orders", "GET", "/api/orders?customer_id=" + ada.ID, nil, eve.Auth(), 403, "may not"},
		{"read another customer's order", "GET", "/api/orders/" + order, nil, eve.Auth(), 403, "not customer " + eve.ID},
		{"read an order without a token", "GET", "/api/orders/" + order, nil, nil, 401, "needs a token"},
		{"read another customer's profile", "GET", "/api/customers/" + ada.ID, nil, eve.Auth(), 403, "may not"},
		{"read a profile without a token", "GET", "/api/customers/" + ada.ID, nil, nil, 401, "needs a token"},
		{"order as another customer", "POST", "/api/orders", map[string]any{"customer_id": ada.ID,
			"items": []any{shoptest.Item("sku-mug", 1)}, "card": "4242424242424242"}, eve.Auth(), 403, "may not"},
		{"order without a token", "POST", "/api/orders", map[string]any{"customer_id": ada.ID,
			"items": []any{shoptest.Item("sku-mug", 1)}, "card": "4242424242424242"}, nil, 401, "needs a token"},
		{"a made-up token", "GET", "/api/orders", nil, shoptest.Bearer("ct1." + ada.ID + ".9999999999.bm9wZQ"), 401, "not issued by this shop"},
		{"an altered token", "GET", "/api/orders/" + order, nil, shoptest.Bearer(altered), 401, "invalid customer token"},
		{"another customer's signature on the victim's id", "GET", "/api/orders?customer_id=" + ada.ID, nil, shoptest.Bearer(swapped), 401, "not issued by this shop"},
		{"the customer's id as a token", "GET", "/api/orders/" + order, nil, shoptest.Bearer(ada.ID), 401, "malformed"},
		{"a token in another scheme", "GET", "/api/orders/" + order, nil, []string{"Authorization", "Basic " + ada.Token}, 401, "needs a token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, hdr, err := shoptest.Do(nil, tc.method, base+tc.path, tc.body, tc.auth...)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := out["error"].(string)
			if code != tc.code || !strings.Contains(msg, tc.want) {
				t.Errorf("%s %s = %d %v, want %d with %q", tc.method, tc.path, code, out, tc.code, tc.want)
			}
			if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer: %v", hdr)
			}
			b, _ := json.Marshal(out)
			for _, secret := range secrets {
				if strings.Contains(string(b), secret) && !strings.Contains(tc.path, secret) {
					t.Errorf("the answer gives away %q: %s", secret, b)
				}
			}
		})
	}
	// Eve's own token reads Eve's data, and nothing of Ada's.
	code, out := shoptest.MustCall(t, "GET", base+"/api/orders", nil, eve.Auth()...)
	if list, _ := out["orders"].([]any); code != 200 || len(list) != 0 {
		t.Errorf("Eve's orders: %d %v, want none", code, out)
	}
	if code, out := shoptest.MustCall(t, "GET", base+"/api/customers/"+eve.ID, nil, eve.Auth()...); code != 200 || out["name"] != "Eve Attacker" {
		t.Errorf("Eve's profile: %d %v", code, out)
	}
	// The operator's token lists everyone.
	if s.OperatorToken == "" {
		t.Log("no operator token for this shop: the operator's listing is not checked")
		return
	}
	code, out = shoptest.MustCall(t, "GET", base+"/api/customers", nil, shoptest.Bearer(s.OperatorToken)...)
	if b, _ := json.Marshal(out); code != 200 || !strings.Contains(string(b), ada.ID) || !strings.Contains(string(b), eve.ID) {
		t.Errorf("the operator's list of customers: %d %s", code, b)
	}
	code, out = shoptest.MustCall(t, "GET", base+"/api/orders", nil, shoptest.Bearer(s.OperatorToken)...)
	if b, _ := json.Marshal(out); code != 200 || !strings.Contains(string(b), order) {
		t.Errorf("the operator's list of orders: %d %s", code, b)
	}
	if code, out := shoptest.MustCall(t, "GET", base+"/api/orders/"+order, nil, shoptest.Bearer(s.OperatorToken)...); code != 200 || out["id"] != order {
		t.Errorf("the operator reads an order: %d %v", code, out)
	}
}

// A websocket pushes an order only to its customer's browsers: Eve's
// socket, and one that brings no token, never get Ada's order; a socket
// that brings a bad token is closed.
func TestWebsocketPushesOnlyTheCustomersOwnOrders(t *testing.T) {
	s := theShop(t)
	base := "http://" + s.HTTPAddr
	ada := shoptest.Register(t, base, "Ada Pushed", "FR")
	eve := shoptest.Register(t, base, "Eve Listening", "DE")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(tokens ...string) *websocket.Conn {
		t.Helper()
		c, _, err := websocket.Dial(ctx, "ws://"+s.HTTPAddr+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		if tokens != nil {
			b, _ := json.Marshal(map[string]any{"tokens": tokens})
			if err := c.Write(ctx, websocket.MessageText, b); err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	// Everything a socket is pushed, until it closes or the test ends.
	read := func(c *websocket.Conn) <-chan string {
		out := make(chan string, 1024)
		go func() {
			defer close(out)
			for {
				_, b, err := c.Read(ctx)
				if err != nil {
					out <- "closed: " + err.Error()
					return
				}
				out <- string(b)
			}
		}()
		return out
	}
	// until: the messages of ch up to the first that holds every one of
	// want (the gateway answers a socket's tokens with its customers).
	until := func(who string, ch <-chan string, want ...string) []string {
		t.Helper()
		var seen []string
		for {
			select {
			case m, ok := <-ch:
				if !ok {
					t.Fatalf("%s socket closed; it read %v", who, seen)
				}
				seen = append(seen, m)
				all := true
				for _, w := range want {
					all = all && strings.Contains(m, w)
				}
				if all {
					return seen
				}
			case <-ctx.Done():
				t.Fatalf("%s socket never read %q; it read %v", who, want, seen)
			}
		}
	}
	adas, eves, nobodys := read(dial(ada.Token)), read(dial(eve.Token)), read(dial())
	until("Ada's", adas, `"type":"auth"`, ada.ID)
	until("Eve's", eves, `"type":"auth"`, eve.ID)
	bad := read(dial("ct1." + ada.ID + ".9999999999.bm9wZQ"))
	order := shoptest.PlaceOrder(t, base, ada, "4242424242424242", shoptest.Item("sku-mug", 1))
	shoptest.AwaitStatus(t, base, ada, order, "confirmed")
	until("Ada's", adas, order, `"status":"confirmed"`)
	// Then Eve orders: a socket reads its messages in order, so what
	// Eve's socket was pushed of Ada's order came before her own order.
	evesOrder := shoptest.PlaceOrder(t, base, eve, "4242424242424242", shoptest.Item("sku-tee", 1))
	shoptest.AwaitStatus(t, base, eve, evesOrder, "confirmed")
	for _, m := range until("Eve's", eves, evesOrder, `"status":"confirmed"`) {
		if strings.Contains(m, order) || strings.Contains(m, ada.ID) {
			t.Errorf("Eve's socket was pushed Ada's order: %s", m)
		}
	}
	for len(nobodys) > 0 {
		if m := <-nobodys; strings.Contains(m, `"type":"order"`) {
			t.Errorf("a socket without a token was pushed an order: %s", m)
		}
	}
	for m := range bad {
		if strings.HasPrefix(m, "closed") {
			if !strings.Contains(m, "4401") {
				t.Errorf("a socket with a made-up token: %s, want it closed with 4401", m)
			}
			break
		}
		if strings.Contains(m, `"type":"order"`) || strings.Contains(m, `"type":"auth"`) {
			t.Errorf("a socket with a made-up token read %s", m)
		}
	}
}
