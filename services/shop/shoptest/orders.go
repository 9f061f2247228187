package shoptest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
)

// Address is a postal address in country, as the gateway takes it.
func Address(country string) map[string]string {
	return map[string]string{"line1": "1 Main Street", "city": "Springfield", "postcode": "12345", "country": country}
}

// Item is an order line: qty of sku.
func Item(sku string, qty int) map[string]any { return map[string]any{"sku": sku, "qty": qty} }

// Email is the e-mail address Register gives a customer named name.
func Email(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), " ", ".") + "@example.com"
}

// Customer is a customer registered at the gateway: its id, and the token
// the gateway gave it, which every request for its data brings.
type Customer struct {
	ID    string
	Token string
}

// Auth is the header that authenticates as the customer, as name, value
// pairs for [Do], [Call] and [MustCall].
func (c Customer) Auth() []string { return Bearer(c.Token) }

// Bearer is the header that brings token (a customer's or the
// operator's), as name, value pairs for [Do], [Call] and [MustCall].
func Bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// Register registers a customer named name in country at the gateway at
// base ("http://host:port") and waits until the gateway knows it (it
// learns customers from their events). It returns the customer's id and
// token.
func Register(t testing.TB, base, name, country string) Customer {
	t.Helper()
	code, res := MustCall(t, "POST", base+"/api/customers", map[string]any{"name": name, "email": Email(name), "address": Address(country)})
	c := Customer{}
	c.ID, _ = res["id"].(string)
	c.Token, _ = res["token"].(string)
	if code != 201 || c.ID == "" || c.Token == "" {
		t.Fatalf("register: %d %v", code, res)
	}
	var got int
	sagatest.Poll(t, 30*time.Second, func() bool {
		got, _ = Call(t, "GET", base+"/api/customers/"+c.ID, nil, c.Auth()...)
		return got == 200
	}, func() string { return fmt.Sprintf("the gateway does not know customer %s: %d", c.ID, got) })
	return c
}

// PlaceOrder posts an order of items for the customer, with its token,
// paid with card, until the gateway accepts it (202), and returns its id.
func PlaceOrder(t testing.TB, base string, c Customer, card string, items ...map[string]any) string {
	t.Helper()
	var id string
	var code int
	var res map[string]any
	sagatest.Poll(t, 30*time.Second, func() bool {
		code, res = Call(t, "POST", base+"/api/orders", map[string]any{"customer_id": c.ID, "items": items, "card": card}, c.Auth()...)
		id, _ = res["id"].(string)
		return code == 202 && id != ""
	}, func() string { return fmt.Sprintf("the order was not accepted: %d %v", code, res) })
	return id
}

// AwaitStatus waits (a minute at most) until the gateway says the order
// of customer c has one of status, and returns the order's view.
func AwaitStatus(t testing.TB, base string, c Customer, id string, status ...string) map[string]any {
	t.Helper()
	var res map[string]any
	sagatest.Poll(t, 60*time.Second, func() bool {
		_, res = Call(t, "GET", base+"/api/orders/"+id, nil, c.Auth()...)
		for _, s := range status {
			if res != nil && res["status"] == s {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("order %s, want %v: %s", id, status, JSON(res)) })
	return res
}

// AwaitHealth waits (a minute at most) until base's /healthz answers
// code, with reason when it is not empty, and returns the answer.
func AwaitHealth(t testing.TB, base string, code int, reason string) map[string]any {
	t.Helper()
	var got int
	var res map[string]any
	sagatest.Poll(t, 60*time.Second, func() bool {
		got, res = Call(t, "GET", base+"/healthz", nil)
		return got == code && (reason == "" || res["reason"] == reason)
	}, func() string { return fmt.Sprintf("healthz: %d %s", got, JSON(res)) })
	return res
}

// ConfirmPayment confirms, as customer c, the payment of order id that
// waits for it (the page's "confirm payment"), and returns the gateway's
// answer: 200 once payment charged the card and completed the charge
// step; 403 for another customer's order; 409 for an order that waits
// for no confirmation (a small one, or its wait is over).
func ConfirmPayment(t testing.TB, base string, c Customer, id string) (int, map[string]any) {
	t.Helper()
	return Call(t, "POST", base+"/api/orders/"+id+"/confirm-payment", map[string]any{}, c.Auth()...)
}

// AwaitWaiting waits (a minute at most) until step of order id of
// customer c waits on party (a step completed later: "customer",
// "carrier"), and returns the order's view.
func AwaitWaiting(t testing.TB, base string, c Customer, id, step, party string) map[string]any {
	t.Helper()
	var res map[string]any
	sagatest.Poll(t, 60*time.Second, func() bool {
		_, res = Call(t, "GET", base+"/api/orders/"+id, nil, c.Auth()...)
		s := Step(res, step)
		return s != nil && s["status"] == "waiting" && s["waiting_on"] == party && s["wait_until"] != nil
	}, func() string {
		return fmt.Sprintf("order %s: step %s does not wait on %s: %s", id, step, party, JSON(res))
	})
	return res
}

// Step is the view of step name in an order's view, nil when it has none
// (yet).
func Step(order map[string]any, name string) map[string]any {
	sg, _ := order["saga"].(map[string]any)
	steps, _ := sg["steps"].([]any)
	for _, s := range steps {
		if m, ok := s.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	return nil
}
