package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// A successful payment sends the customer one receipt (payment id, order
// id, time, amount), however often its PaymentSucceeded is delivered; a
// declined card sends none.
func TestReceiptOncePerPaymentEvenWhenRedelivered(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	paid := h.order(ada, okCard, shoptest.Item("sku-tee", 2))
	declined := h.order(ada, declinedCard, shoptest.Item("sku-tee", 1))
	h.await(paid, "confirmed", 30*time.Second)
	h.await(declined, "rejected", 30*time.Second)
	receipt := filepath.Join(h.mail, "receipt-pay-"+paid+".eml")
	sagatest.Poll(t, 15*time.Second, func() bool { _, err := os.Stat(receipt); return err == nil },
		func() string { return fmt.Sprintf("no receipt; mails: %v", h.mails()) })
	body, _ := os.ReadFile(receipt)
	for _, want := range []string{"pay-" + paid, paid, "44.00 EUR", "To: \"ada\" <ada@example.com>", "Subject: Receipt for your order " + paid} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the receipt lacks %q:\n%s", want, body)
		}
	}
	before, _ := os.Stat(receipt)

	// The same payment's event delivered again, twice, under new event ids
	// (so the broker does not drop them as duplicates).
	ctx := context.Background()
	ledger, err := payment.Ledger(ctx, h.deps)
	if err != nil || len(ledger) != 1 {
		t.Fatalf("ledger %+v %v", ledger, err)
	}
	c := ledger[0]
	e := schemas.PaymentSucceeded{PaymentID: c.PaymentID, OrderID: c.OrderID, Time: c.ChargedAt, Amount: c.Amount, Currency: c.Currency}
	for i := range 2 {
		if err := events.Publish(ctx, h.deps.Bus, schemas.TopicPaymentSucceeded, fmt.Sprintf("%s-again-%d", c.PaymentID, i), e); err != nil {
			t.Fatal(err)
		}
	}
	stream, _ := h.deps.JS.Stream(ctx, events.Stream)
	si, _ := stream.Info(ctx)
	cons, err := h.deps.JS.Consumer(ctx, events.Stream, events.ConsumerName("notification", schemas.TopicPaymentSucceeded))
	if err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 15*time.Second, func() bool { // notification has taken both
		ci, err := cons.Info(ctx)
		return err == nil && ci.AckFloor.Stream >= si.State.LastSeq && ci.NumAckPending == 0
	}, func() string { return "notification did not take the redelivered events" })
	var receipts []string
	for _, m := range h.mails() {
		if strings.HasPrefix(m, "receipt-") {
			receipts = append(receipts, m)
		}
	}
	if len(receipts) != 1 || receipts[0] != "receipt-pay-"+paid+".eml" {
		t.Errorf("receipts %v, want one, for pay-%s", receipts, paid)
	}
	after, _ := os.Stat(receipt)
	if !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the receipt was written again")
	}
	t.Logf("1 payment, its event delivered 3 times: %d receipt", len(receipts))
}

// A PaymentSucceeded names its customer, so its receipt needs no other
// event first: one that comes before its order's OrderPlaced (or whose
// OrderPlaced never reaches the notification service) is still receipted.
// The compose run lost receipts when OrderPlaced lagged past the retries.
func TestReceiptNeedsNoOtherEvent(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	sagatest.Poll(t, 15*time.Second, func() bool { // the welcome: notification knows ada
		_, err := os.Stat(filepath.Join(h.mail, "welcome-"+ada.ID+".eml"))
		return err == nil
	}, func() string { return fmt.Sprintf("no welcome; mails: %v", h.mails()) })
	e := schemas.PaymentSucceeded{PaymentID: "pay-ord-nobodyplacedit", OrderID: "ord-nobodyplacedit", CustomerID: ada.ID,
		Time: time.Now().UTC(), Amount: 1250, Currency: schemas.Currency}
	if err := events.Publish(context.Background(), h.deps.Bus, schemas.TopicPaymentSucceeded, e.PaymentID, e); err != nil {
		t.Fatal(err)
	}
	receipt := filepath.Join(h.mail, "receipt-pay-ord-nobodyplacedit.eml")
	sagatest.Poll(t, 15*time.Second, func() bool { _, err := os.Stat(receipt); return err == nil },
		func() string { return fmt.Sprintf("no receipt; mails: %v", h.mails()) })
	if body, _ := os.ReadFile(receipt); !strings.Contains(string(body), "12.50 EUR") || !strings.Contains(string(body), "ada@example.com") {
		t.Errorf("receipt:\n%s", body)
	}
}
