package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// TestNoCardNumberAtRest places orders with test cards (approved and
// declined, typed with and without spaces), lets them end, and then reads
// every message of every stream, KV buckets, timers and dead letters
// included (subject, headers and data), every saga's state, the API's
// answers and the services' log lines: no card number may be in any of
// them, neither one of the cards used nor any other run of 13 to 19
// digits that passes the Luhn check.
func TestNoCardNumberAtRest(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	scott := h.register("scott", "AQ")
	cards := []string{okCard, declinedCard, "5555555555554444", "378282246310005"}
	orders := map[string]string{ // id: the status it ends in
		h.order(ada, okCard, shoptest.Item("sku-mug", 1)):                      "confirmed",
		h.order(ada, "4242 4242 4242 4242", shoptest.Item("sku-tee", 1)):       "confirmed",
		h.order(ada, declinedCard, shoptest.Item("sku-mug", 1)):                "rejected",
		h.order(ada, "4000 0000 0000 0002", shoptest.Item("sku-mug", 1)):       "rejected",
		h.order(ada, "5555555555554444", shoptest.Item("sku-sold-out", 1)):     "rejected",
		h.order(scott, "378282246310005", shoptest.Item("sku-sticker", 1)):     "rejected",
		h.order(ada, "4242424242424242", shoptest.Item("sku-hoodie", 1)):       "confirmed",
		h.order(scott, "4000000000000002", shoptest.Item("sku-sticker", 2)):    "rejected",
		h.order(ada, " 5555 5555 5555 4444 ", shoptest.Item("sku-sticker", 1)): "confirmed",
	}
	var views []string
	for id, status := range orders {
		o := h.await(id, status, 30*time.Second)
		b, _ := json.Marshal(o)
		views = append(views, "GET /api/orders/"+id+": "+string(b))
	}
	_, list := h.do("GET", "/api/orders?customer_id="+ada.ID, nil, ada.Auth()...)
	b, _ := json.Marshal(list)
	views = append(views, "GET /api/orders: "+string(b))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var found []string
	check := func(where, text string) {
		if c := cardIn(text, cards); c != "" {
			found = append(found, fmt.Sprintf("%s holds %s: %.300s", where, c, text))
		}
	}
	for _, v := range views {
		check("the API", v)
	}
	for id := range orders {
		st, err := h.deps.Sagas.Get(ctx, schemas.OrderFlow, id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(st)
		check("saga "+id+"'s state", string(b))
		tl, err := h.deps.Sagas.Timeline(ctx, schemas.OrderFlow, id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = json.Marshal(tl)
		check("saga "+id+"'s timeline", string(b))
	}
	streams, scanned := 0, 0
	lister := h.deps.JS.StreamNames(ctx)
	var names []string
	for name := range lister.Name() {
		names = append(names, name)
	}
	if err := lister.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		streams++
		s, err := h.deps.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue // deleted
			}
			if err != nil {
				t.Fatalf("%s #%d: %v", name, seq, err)
			}
			scanned++
			var hdr strings.Builder
			for k, vs := range m.Header {
				fmt.Fprintf(&hdr, "%s: %s\n", k, strings.Join(vs, ", "))
			}
			check(fmt.Sprintf("stream %s #%d (%s)", name, seq, m.Subject), m.Subject+"\n"+hdr.String()+"\n"+string(m.Data))
		}
	}
	check("the services' logs", h.logs.String())
	if streams < 5 || scanned < 50 {
		t.Errorf("scanned %d messages in %d streams: too few to mean anything", scanned, streams)
	}
	for _, f := range found {
		t.Error(f)
	}
	t.Logf("scanned %d messages in %d streams, %d bytes of logs", scanned, streams, h.logs.Len())
}

// digitRun is a run of digits (spaces and dashes between them allowed)
// that stands on its own: not inside a longer token of letters and digits,
// such as a hexadecimal id, where a Luhn-valid run is chance, not a card.
var digitRun = regexp.MustCompile(`(?:^|[^0-9A-Za-z])([0-9][0-9 -]*[0-9])(?:$|[^0-9A-Za-z])`)

// cardIn returns the first card number in text: one of cards, or any run
// of 13 to 19 digits (spaces and dashes between them allowed) that passes
// the Luhn check.
func cardIn(text string, cards []string) string {
	for _, c := range cards {
		if strings.Contains(text, c) {
			return c
		}
	}
	for _, m := range digitRun.FindAllStringSubmatch(text, -1) {
		run := m[1]
		digits := strings.NewReplacer(" ", "", "-", "").Replace(run)
		if len(digits) >= 13 && len(digits) <= 19 && luhn(digits) {
			return run
		}
	}
	return ""
}

func luhn(digits string) bool {
	sum := 0
	for i := range len(digits) {
		d := int(digits[len(digits)-1-i] - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// TestOrderWhilePaymentIsDownIsRefused: without the payment service no
// card can be tokenized, so an order is refused with a 503 that names the
// payment service, and nothing is started; once payment is back, orders
// go through.
func TestOrderWhilePaymentIsDownIsRefused(t *testing.T) {
	h := newShop(t, "payment")
	ada := h.register("ada", "FR")
	code, res := h.do("POST", "/api/orders", map[string]any{"customer_id": ada.ID, "items": []any{shoptest.Item("sku-mug", 1)}, "card": okCard}, ada.Auth()...)
	if msg, _ := res["error"].(string); code != 503 || !strings.Contains(msg, "payment") || !strings.Contains(msg, "try again") {
		t.Errorf("an order while payment is down: %d %v", code, res)
	}
	ctx := context.Background()
	if sagas, err := h.deps.Sagas.List(ctx, schemas.OrderFlow); err != nil || len(sagas) != 0 {
		t.Errorf("sagas started: %d (%v)", len(sagas), err)
	}
	if orders, err := order.Orders(ctx, h.deps); err != nil || len(orders) != 0 {
		t.Errorf("orders recorded: %d (%v)", len(orders), err)
	}
	h.start("payment")
	var id string
	sagatest.Poll(t, 30*time.Second, func() bool {
		code, res = h.do("POST", "/api/orders", map[string]any{"customer_id": ada.ID, "items": []any{shoptest.Item("sku-mug", 1)}, "card": okCard}, ada.Auth()...)
		id, _ = res["id"].(string)
		return code == 202
	}, func() string { return fmt.Sprintf("an order once payment is back: %d %v", code, res) })
	h.await(id, "confirmed", 30*time.Second)
}

// TestCardTokenPaysForOneOrderOfItsCustomer: a token made for one customer
// does not pay for another's order, and pays for one order only; both
// refusals reject the order without charging it.
func TestCardTokenPaysForOneOrderOfItsCustomer(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	bob := h.register("bob", "FR")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	card, err := kit.Call[payment.TokenizeRequest, schemas.Card](ctx, h.deps.NC, payment.TokenizeSubject, payment.TokenizeRequest{CustomerID: ada.ID, Number: "4242 4242 4242 4242"})
	if err != nil || card.Brand != "visa" || card.Last4 != "4242" || !strings.HasPrefix(card.Token, "tok_") {
		t.Fatalf("tokenize: %+v %v", card, err)
	}
	place := func(customer string) string {
		t.Helper()
		res, err := kit.Call[order.PlaceRequest, order.PlaceResult](ctx, h.deps.NC, order.PlaceSubject,
			order.PlaceRequest{CustomerID: customer, Items: []order.Line{{SKU: "sku-mug", Qty: 1}}, Card: card})
		if err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	stolen := place(bob.ID)
	if o := h.await(stolen, "rejected", 30*time.Second); !strings.Contains(o["reason"].(string), "another customer") {
		t.Errorf("bob paid with ada's token: %v", o["reason"])
	}
	first := place(ada.ID)
	h.await(first, "confirmed", 30*time.Second)
	again := place(ada.ID)
	if o := h.await(again, "rejected", 30*time.Second); !strings.Contains(o["reason"].(string), "paid for order "+first) {
		t.Errorf("the token paid twice: %v", o["reason"])
	}
	ledger, err := payment.Ledger(ctx, h.deps)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ledger {
		if c.Status == "charged" && c.OrderID != first {
			t.Errorf("charged for %s: %+v", c.OrderID, c)
		}
	}
}

// The scanner finds a card number standing alone, and not a Luhn-valid run
// of digits inside an id (ord-2646d5279554417902d00104 holds one).
func TestCardScannerSeesCardsNotIds(t *testing.T) {
	for text, want := range map[string]bool{
		`"card":"4242424242424242"`:             true,
		"paid with 4242 4242 4242 4242 today":   true,
		"ord-2646d5279554417902d00104":          false,
		`{"id":"ord-2646d5279554417902d00104"}`: false,
	} {
		if got := cardIn(text, nil) != ""; got != want {
			t.Errorf("cardIn(%q) found a card: %v, want %v", text, got, want)
		}
	}
}
