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

// Register registers a customer named name in country at the gateway at
// base ("http://host:port") and waits until the gateway lists it (it
// learns customers from their events). It returns the customer's id.
func Register(t testing.TB, base, name, country string) string {
	t.Helper()
	code, res := MustCall(t, "POST", base+"/api/customers", map[string]any{"name": name, "email": Email(name), "address": Address(country)})
	id, _ := res["id"].(string)
	if code != 201 || id == "" {
		t.Fatalf("register: %d %v", code, res)
	}
	sagatest.Poll(t, 30*time.Second, func() bool {
		_, res := Call(t, "GET", base+"/api/customers", nil)
		list, _ := res["customers"].([]any)
		for _, c := range list {
			if m, _ := c.(map[string]any); m["id"] == id {
				return true
			}
		}
		return false
	}, func() string { return "the gateway does not know customer " + id })
	return id
}

// PlaceOrder posts an order of items for the customer, paid with card,
// until the gateway accepts it (202), and returns its id.
func PlaceOrder(t testing.TB, base, customer, card string, items ...map[string]any) string {
	t.Helper()
	var id string
	var code int
	var res map[string]any
	sagatest.Poll(t, 30*time.Second, func() bool {
		code, res = Call(t, "POST", base+"/api/orders", map[string]any{"customer_id": customer, "items": items, "card": card})
		id, _ = res["id"].(string)
		return code == 202 && id != ""
	}, func() string { return fmt.Sprintf("the order was not accepted: %d %v", code, res) })
	return id
}

// AwaitStatus waits (a minute at most) until the gateway says the order
// has one of status, and returns the order's view.
func AwaitStatus(t testing.TB, base, id string, status ...string) map[string]any {
	t.Helper()
	var res map[string]any
	sagatest.Poll(t, 60*time.Second, func() bool {
		_, res = Call(t, "GET", base+"/api/orders/"+id, nil)
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
