package payment_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/payment"
)

var now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestNewCardTokenKeepsNoNumber(t *testing.T) {
	tokenRE := regexp.MustCompile(`^tok_[A-Z2-7]{26}$`) // the pattern of OrderPlaced's card.token
	seen := map[string]bool{}
	for _, tc := range []struct {
		number, brand, last4 string
		declines             bool
	}{
		{"4242424242424242", "visa", "4242", false},
		{"4242 4242 4242 4242", "visa", "4242", false},
		{payment.DeclinedCard, "visa", "0002", true},
		{"4000 0000 0000 0002", "visa", "0002", true},
		{"5555555555554444", "mastercard", "4444", false},
		{"2223003122003222", "mastercard", "3222", false},
		{"378282246310005", "amex", "0005", false},
		{"6011111111111117", "card", "1117", false},
	} {
		tok, err := payment.NewCardToken("cus-1", tc.number, now)
		if err != nil {
			t.Fatalf("%s: %v", tc.number, err)
		}
		if tok.Brand != tc.brand || tok.Last4 != tc.last4 || tok.Declines != tc.declines || tok.CustomerID != "cus-1" || tok.OrderID != "" {
			t.Errorf("%s: %+v", tc.number, tok)
		}
		if !tokenRE.MatchString(tok.Token) || seen[tok.Token] {
			t.Errorf("%s: token %q is malformed or repeated", tc.number, tok.Token)
		}
		seen[tok.Token] = true
		stored, _ := json.Marshal(tok)
		if digits := strings.ReplaceAll(tc.number, " ", ""); strings.Contains(string(stored), digits[:len(digits)-4]) {
			t.Errorf("%s: the stored token holds the number: %s", tc.number, stored)
		}
		if err := schemas.ValidateValue("OrderPlaced", schemas.OrderPlaced{OrderID: "o", CustomerID: "c", Items: []schemas.Item{{SKU: "s", Qty: 1}},
			Currency: "EUR", Card: tok.Card(), PlacedAt: now}); err != nil {
			t.Errorf("%s: an order with its card: %v", tc.number, err)
		}
	}
	for _, tc := range []struct{ customer, number, want string }{
		{"cus-1", "42", "malformed card number"},
		{"cus-1", "4242-4242-4242-4242", "malformed card number"},
		{"cus-1", "42424242424242424242", "malformed card number"},
		{"cus-1", "", "malformed card number"},
		{"", "4242424242424242", "customer_id"},
	} {
		_, err := payment.NewCardToken(tc.customer, tc.number, now)
		var bad kit.BadRequest
		if !errors.As(err, &bad) || !strings.Contains(bad.Msg, tc.want) || strings.Contains(bad.Msg, "4242") {
			t.Errorf("NewCardToken(%q, %q) = %v, want a bad request about %q", tc.customer, tc.number, err, tc.want)
		}
	}
}

func TestCardTokenPaysForOneOrderOfItsCustomer(t *testing.T) {
	tok, err := payment.NewCardToken("cus-1", "4242424242424242", now)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := tok.Use(schemas.OrderPlaced{OrderID: "ord-1", CustomerID: "cus-2"}); changed || !errors.Is(err, payment.ErrTokenRefused) {
		t.Errorf("another customer's order: %v %v", changed, err)
	}
	if changed, err := tok.Use(schemas.OrderPlaced{OrderID: "ord-1", CustomerID: "cus-1"}); !changed || err != nil || tok.OrderID != "ord-1" {
		t.Errorf("first use: %v %v %+v", changed, err, tok)
	}
	if changed, err := tok.Use(schemas.OrderPlaced{OrderID: "ord-1", CustomerID: "cus-1"}); changed || err != nil {
		t.Errorf("the same order again (a redelivered charge): %v %v", changed, err)
	}
	if changed, err := tok.Use(schemas.OrderPlaced{OrderID: "ord-2", CustomerID: "cus-1"}); changed || !errors.Is(err, payment.ErrTokenRefused) {
		t.Errorf("a second order: %v %v", changed, err)
	}
}

func TestAuthorize(t *testing.T) {
	good, _ := payment.NewCardToken("cus-1", "4242424242424242", now)
	declined, _ := payment.NewCardToken("cus-1", payment.DeclinedCard, now)
	if err := payment.Authorize(good, 100); err != nil {
		t.Errorf("good card: %v", err)
	}
	if err := payment.Authorize(declined, 100); !errors.Is(err, payment.ErrDeclined) {
		t.Errorf("declined card: %v", err)
	}
}
