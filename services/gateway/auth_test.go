package gateway_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
)

// sign makes a token as the gateway does (ct1.<customer>.<expiry>.<MAC>),
// with key: what someone who holds the key could make.
func sign(key []byte, customer string, exp time.Time) string {
	body := fmt.Sprintf("ct1.%s.%d", customer, exp.Unix())
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	return body + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// A customer's token reads that customer's data until it expires, and is
// refused once it has, or when another key signed it; the operator's
// token reads everyone's.
func TestCustomerTokens(t *testing.T) {
	base := "http://" + startShop(t)
	code, res, _ := send(t, "POST", base+"/api/customers", map[string]string{"Content-Type": jsonType}, customerJSON("Ada"))
	if code != 201 {
		t.Fatalf("register: %d %v", code, res)
	}
	id, token := res["id"].(string), res["token"].(string)
	exp, err := time.Parse(time.RFC3339, res["token_expires_at"].(string))
	if err != nil || exp.Before(time.Now().Add(29*24*time.Hour)) || exp.After(time.Now().Add(31*24*time.Hour)) {
		t.Errorf("the token expires at %v (%v), want in 30 days", res["token_expires_at"], err)
	}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	sagatest.Poll(t, 20*time.Second, func() bool {
		code, _, _ := send(t, "GET", base+"/api/customers/"+id, bearer(token), nil)
		return code == 200
	}, func() string { return "the gateway does not know the customer" })
	for _, tc := range []struct {
		name, token string
		code        int
		want        string
	}{
		{"the customer's own", token, 200, ""},
		{"the same, signed again by the key", sign(testTokenKey, id, exp), 200, ""},
		{"expired", sign(testTokenKey, id, time.Now().Add(-time.Minute)), 401, "expired at"},
		{"another key's", sign([]byte("another-key-of-at-least-32-bytes-0123456789"), id, exp), 401, "not issued by this shop"},
		{"no signature", strings.Join(strings.Split(token, ".")[:3], "."), 401, "malformed"},
		{"another version", "ct2" + strings.TrimPrefix(token, "ct1"), 401, "malformed"},
		{"the operator's", testOperator, 200, ""},
		{"nearly the operator's", testOperator + "x", 401, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, res, hdr := send(t, "GET", base+"/api/customers/"+id, bearer(tc.token), nil)
			msg, _ := res["error"].(string)
			if code != tc.code || !strings.Contains(msg, tc.want) {
				t.Errorf("GET /api/customers/%s = %d %v, want %d with %q", id, code, res, tc.code, tc.want)
			}
			if code == 401 && !strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate %q", hdr.Get("WWW-Authenticate"))
			}
			if code == 200 && res["name"] != "Ada" {
				t.Errorf("profile %v", res)
			}
		})
	}
	// The operator lists everyone; a customer may not.
	if code, res, _ := send(t, "GET", base+"/api/customers", bearer(testOperator), nil); code != 200 || len(res["customers"].([]any)) != 1 {
		t.Errorf("the operator's list: %d %v", code, res)
	}
	if code, res, _ := send(t, "GET", base+"/api/customers", bearer(token), nil); code != 403 {
		t.Errorf("a customer's list: %d %v, want 403", code, res)
	}
	// The operator does not order for a customer: an order is its
	// customer's.
	b := []byte(`{"customer_id":"` + id + `","items":[{"sku":"sku-mug","qty":1}],"card":"4242424242424242"}`)
	if code, res, _ := send(t, "POST", base+"/api/orders", map[string]string{"Content-Type": jsonType, "Authorization": "Bearer " + testOperator}, b); code != 403 {
		t.Errorf("an order with the operator's token: %d %v, want 403", code, res)
	}
}
