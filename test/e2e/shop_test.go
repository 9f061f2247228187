package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/billing"
	"github.com/choreo-go/choreo/services/inventory"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shipping"
	"github.com/choreo-go/choreo/services/shop/shoptest"
	"github.com/choreo-go/choreo/test/checker"
)

const (
	okCard       = "4242424242424242"
	declinedCard = "4000000000000002"
)

func TestOrderOutcomes(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	scott := h.register("scott", "AQ")
	ok := h.order(ada, okCard, shoptest.Item("sku-mug", 2), shoptest.Item("sku-tee", 1))
	declined := h.order(ada, declinedCard, shoptest.Item("sku-mug", 1))
	soldOut := h.order(ada, okCard, shoptest.Item("sku-sold-out", 1))
	antarctica := h.order(scott, okCard, shoptest.Item("sku-sticker", 3))

	t.Run("success", func(t *testing.T) {
		o := h.await(ok, "confirmed", 20*time.Second)
		if o["total"].(float64) != 2*1250+2200 || o["saga"].(map[string]any)["status"] != "completed" {
			t.Errorf("order %v", o)
		}
		for name, s := range steps(o) {
			if s["status"] != "completed" || s["attempts"].(float64) != 1 || s["started_at"] == nil || s["ended_at"] == nil {
				t.Errorf("step %s: %v", name, s)
			}
		}
		// rev orders an order's views: odd once settled, above any view
		// seen while it ran (a pending view has at most the start event).
		if rev := o["rev"].(float64); int(rev)%2 != 1 || rev <= 2 {
			t.Errorf("settled order's rev %v", rev)
		}
	})
	t.Run("declined card is refused, nothing else happens", func(t *testing.T) {
		o := h.await(declined, "rejected", 20*time.Second)
		st := steps(o)
		if !strings.Contains(o["reason"].(string), "card declined") || st["charge"]["status"] != "failed" || st["reserve"]["status"] != "pending" {
			t.Errorf("order %v", o)
		}
	})
	t.Run("sold out: payment refunded", func(t *testing.T) {
		o := h.await(soldOut, "rejected", 20*time.Second)
		st := steps(o)
		if !strings.Contains(o["reason"].(string), "out of stock: sku-sold-out") || st["charge"]["status"] != "compensated" || st["reserve"]["status"] != "failed" {
			t.Errorf("order %v", o)
		}
	})
	t.Run("AQ: parallel siblings and payment compensated", func(t *testing.T) {
		o := h.await(antarctica, "rejected", 20*time.Second)
		st := steps(o)
		if !strings.Contains(o["reason"].(string), "we do not deliver to AQ") || st["book"]["status"] != "failed" || st["charge"]["status"] != "compensated" {
			t.Errorf("order %v", o)
		}
		// Order flow v4 (as v2 and v3): reserve and book run in parallel;
		// the invoice waits for the pivot (bill), so a rejected order has
		// none, and nothing is delivered.
		if s := st["reserve"]["status"]; s != "compensated" && s != "skipped" {
			t.Errorf("reserve is %v", s)
		}
		if _, has := st["invoice"]; has || st["bill"]["status"] != "pending" || st["deliver"]["status"] != "pending" || o["saga"].(map[string]any)["version"].(float64) != 4 {
			t.Errorf("a rejected v4 order invoiced or delivered: %v", o)
		}
	})

	// The services' own records agree.
	ctx := context.Background()
	ledger, _ := payment.Ledger(ctx, h.deps)
	byOrder := map[string]payment.Charge{}
	for _, c := range ledger {
		byOrder[c.OrderID] = c
	}
	if c := byOrder[ok]; c.Status != "charged" || c.Charges != 1 || c.Refunds != 0 {
		t.Errorf("charge of the confirmed order: %+v", c)
	}
	for _, id := range []string{soldOut, antarctica} {
		if c := byOrder[id]; c.Status != "refunded" || c.Charges != 1 || c.Refunds != 1 {
			t.Errorf("charge of %s: %+v", id, c)
		}
	}
	if _, charged := byOrder[declined]; charged {
		t.Error("the declined order was charged")
	}
	w, _ := inventory.State(ctx, h.deps)
	if w.Stock["sku-mug"] != 498 || w.Stock["sku-tee"] != 199 || w.Stock["sku-sticker"] != 5000 {
		t.Errorf("stock %v", w.Stock)
	}
	if r := w.Reservations["res-"+ok]; r == nil || r.Status != "reserved" || r.Reserved != 1 {
		t.Errorf("reservation of the confirmed order: %+v", r)
	}
	// The ended orders' reservations leave the working value (it would
	// grow with every order) for the archive; the state shows both.
	store, err := kit.OpenStore(ctx, h.deps.JS, "inventory")
	if err != nil {
		t.Fatal(err)
	}
	var live inventory.Warehouse
	sagatest.Poll(t, 20*time.Second, func() bool {
		return store.Get(ctx, "warehouse", &live) == nil && len(live.Reservations) == 0
	}, func() string {
		return fmt.Sprintf("reservations of ended orders still in the warehouse: %v", live.Reservations)
	})
	if w, _ := inventory.State(ctx, h.deps); w.Reservations["res-"+ok] == nil || w.Reservations["res-"+ok].Status != "reserved" {
		t.Errorf("archived reservations missing from the state: %v", w.Reservations)
	}
	invs, _ := billing.Invoices(ctx, h.deps)
	for _, inv := range invs {
		if want := map[bool]string{true: "issued", false: "void"}[inv.OrderID == ok]; inv.Status != want {
			t.Errorf("invoice %+v, want %s", inv, want)
		}
	}
	sagatest.Poll(t, 10*time.Second, func() bool {
		m := h.mails()
		return slices.Contains(m, "confirmed-"+ok+".eml") && slices.Contains(m, "rejected-"+declined+".eml") &&
			slices.Contains(m, "rejected-"+soldOut+".eml") && slices.Contains(m, "rejected-"+antarctica+".eml")
	}, func() string { return fmt.Sprint("mails: ", h.mails()) })
	body, _ := os.ReadFile(filepath.Join(h.mail, "rejected-"+soldOut+".eml"))
	if !strings.Contains(string(body), "To: \"ada\" <ada@example.com>") || !strings.Contains(string(body), "out of stock") {
		t.Errorf("rejection e-mail:\n%s", body)
	}
}

func TestBadRequestsGet4xx(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	for _, tc := range []struct {
		name, method, path string
		body               any
		code               int
		want               string
	}{
		{"bad JSON", "POST", "/api/orders", `{"customer_id":`, 400, "bad JSON"},
		{"unknown field", "POST", "/api/orders", `{"customer":"x"}`, 400, "unknown field"},
		{"another customer", "POST", "/api/orders", map[string]any{"customer_id": "cus-nobody", "items": []any{shoptest.Item("sku-mug", 1)}, "card": okCard}, 403, "may not"},
		{"empty items", "POST", "/api/orders", map[string]any{"customer_id": ada.ID, "items": []any{}, "card": okCard}, 400, "at least one item"},
		{"malformed card", "POST", "/api/orders", map[string]any{"customer_id": ada.ID, "items": []any{shoptest.Item("sku-mug", 1)}, "card": "4242-x"}, 400, "malformed card"},
		{"unknown sku", "POST", "/api/orders", map[string]any{"customer_id": ada.ID, "items": []any{shoptest.Item("sku-nope", 1)}, "card": okCard}, 400, "unknown sku"},
		{"zero quantity", "POST", "/api/orders", map[string]any{"customer_id": ada.ID, "items": []any{shoptest.Item("sku-mug", 0)}, "card": okCard}, 400, "quantity"},
		{"bad e-mail", "POST", "/api/customers", map[string]any{"name": "x", "email": "nope", "address": shoptest.Address("FR")}, 400, "email"},
		{"bad country", "POST", "/api/customers", map[string]any{"name": "x", "email": "x@example.com", "address": shoptest.Address("France")}, 400, "country"},
		{"no such order", "GET", "/api/orders/ord-nothing", nil, 404, "no order"},
		{"malformed order id", "GET", "/api/orders/a.b", nil, 400, "malformed"},
		{"no such endpoint", "GET", "/api/nope", nil, 404, "no such endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, res := h.do(tc.method, tc.path, tc.body, ada.Auth()...)
			msg, _ := res["error"].(string)
			if code != tc.code || !strings.Contains(msg, tc.want) {
				t.Errorf("%s %s = %d %v, want %d with %q", tc.method, tc.path, code, res, tc.code, tc.want)
			}
		})
	}
	// And a good order still goes through.
	h.await(h.order(ada, okCard, shoptest.Item("sku-mug", 1)), "confirmed", 20*time.Second)
}

func TestServiceDownWhileOrdersArriveCatchesUp(t *testing.T) {
	h := newShop(t, "billing")
	ada := h.register("ada", "FR")
	var ids []string
	for range 5 {
		ids = append(ids, h.order(ada, okCard, shoptest.Item("sku-mug", 1)))
	}
	// Without billing the sagas wait at the bill step (order flow v2:
	// after the pivot).
	sagatest.Poll(t, 10*time.Second, func() bool {
		_, o := h.do("GET", "/api/orders/"+ids[4], nil, ada.Auth()...)
		return o["saga"] != nil && steps(o)["bill"]["status"] == "running" && steps(o)["confirm"]["status"] == "completed"
	}, func() string { return "the saga did not reach the bill step" })
	_, o := h.do("GET", "/api/orders/"+ids[0], nil, ada.Auth()...)
	if o["status"] != "pending" {
		t.Fatalf("order went on without billing: %v", o)
	}
	h.start("billing")
	for _, id := range ids {
		h.await(id, "confirmed", 20*time.Second)
	}
	invs, _ := billing.Invoices(context.Background(), h.deps)
	if len(invs) != 5 {
		t.Errorf("%d invoices, want 5", len(invs))
	}
}

func TestShippingUsesItsReplicaWhenCustomerServiceIsDown(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	sagatest.Poll(t, 10*time.Second, func() bool { return shipping.KnowsCustomer(context.Background(), h.deps, ada.ID) },
		func() string { return "shipping never learned the customer" })
	h.stop("customer")
	id := h.order(ada, okCard, shoptest.Item("sku-hoodie", 1))
	o := h.await(id, "confirmed", 20*time.Second)
	if steps(o)["book"]["status"] != "completed" {
		t.Errorf("book %v", steps(o)["book"])
	}
	dels, _ := shipping.Deliveries(context.Background(), h.deps)
	if len(dels) != 1 || dels[0].Address.Country != "FR" || dels[0].Status != "scheduled" {
		t.Errorf("deliveries %+v", dels)
	}
	// Registration needs its owner: the gateway says so.
	code, res := h.do("POST", "/api/customers", map[string]any{"name": "bob", "email": "bob@example.com", "address": shoptest.Address("DE")})
	if code != 503 {
		t.Errorf("register with the customer service down: %d %v", code, res)
	}
}

func TestCustomerRegisteredReachesEveryInterestedService(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR") // the gateway's replica has it (register waits for that)
	sagatest.Poll(t, 10*time.Second, func() bool {
		return shipping.KnowsCustomer(context.Background(), h.deps, ada.ID) && slices.Contains(h.mails(), "welcome-"+ada.ID+".eml")
	}, func() string { return "shipping or notification did not hear of the customer" })
}

func TestReadModelRebuiltByReplayIsTheSame(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	var ids []string
	for i, card := range []string{okCard, declinedCard, okCard} {
		ids = append(ids, h.order(ada, card, shoptest.Item("sku-mug", i+1)))
	}
	h.await(ids[0], "confirmed", 20*time.Second)
	h.await(ids[1], "rejected", 20*time.Second)
	h.await(ids[2], "confirmed", 20*time.Second)
	sagatest.Poll(t, 10*time.Second, func() bool {
		_, s := h.do("GET", "/api/stats", nil)
		// every topic's projection has caught up (each has its own consumer)
		return s["orders"] == 3.0 && s["orders_confirmed"] == 2.0 && s["orders_rejected"] == 1.0 &&
			s["payments_succeeded"] == 2.0 && s["payments_failed"] == 1.0 && s["customers"] == 1.0
	}, func() string { _, s := h.do("GET", "/api/stats", nil); return fmt.Sprintf("stats not settled: %v", s) })
	_, before := h.do("GET", "/api/orders?customer_id="+ada.ID, nil, ada.Auth()...)
	_, statsBefore := h.do("GET", "/api/stats", nil)
	if err := h.gw.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, after := h.do("GET", "/api/orders?customer_id="+ada.ID, nil, ada.Auth()...)
	_, statsAfter := h.do("GET", "/api/stats", nil)
	strip := func(m map[string]any) []any {
		var out []any
		for _, o := range m["orders"].([]any) {
			o := o.(map[string]any)
			delete(o, "placed_at") // the gateway's provisional time before the event arrived
			delete(o, "updated_at")
			out = append(out, o)
		}
		return out
	}
	if !reflect.DeepEqual(strip(before), strip(after)) || len(strip(after)) != 3 {
		t.Errorf("orders before and after the rebuild differ:\n%v\n%v", before, after)
	}
	if !reflect.DeepEqual(statsBefore, statsAfter) {
		t.Errorf("stats before %v after %v", statsBefore, statsAfter)
	}
}

func TestCountersMatchTheEvents(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	scott := h.register("scott", "AQ")
	var ids []string
	for _, o := range []struct {
		cust      shoptest.Customer
		card, sku string
	}{{ada, okCard, "sku-mug"}, {ada, declinedCard, "sku-tee"}, {ada, okCard, "sku-sold-out"}, {scott, okCard, "sku-sticker"}, {ada, okCard, "sku-hoodie"}} {
		ids = append(ids, h.order(o.cust, o.card, shoptest.Item(o.sku, 1)))
	}
	for i, want := range []string{"confirmed", "rejected", "rejected", "rejected", "confirmed"} {
		h.await(ids[i], want, 20*time.Second)
	}
	// The counters are projected from several topics, each on its own
	// consumer, so an order's OrderPlaced may be counted after its outcome:
	// poll until the gateway's counters agree with the services' records.
	ctx := context.Background()
	var diffs []string
	sagatest.Poll(t, 15*time.Second, func() bool {
		diffs = countersDiff(ctx, h)
		return len(diffs) == 0
	}, func() string { return strings.Join(diffs, "\n") })
}

// countersDiff compares the gateway's counters with the payment ledger and
// the order service's records, and says where they differ.
func countersDiff(ctx context.Context, h *shopHarness) []string {
	l, o, err := records(ctx, h, false)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if l.refunds != 2 {
		problems = append(problems, fmt.Sprintf("the ledger holds %d refunds, want 2", l.refunds))
	}
	return h.statsDiff(map[string]float64{
		"orders": 5, "orders_confirmed": o.confirmed, "orders_rejected": o.rejected, "customers": 2,
		"payments_succeeded": float64(l.charges), "payments_failed": 1, "refunds": float64(l.refunds),
		"charged": float64(l.charged), "refunded": float64(l.refunded), "revenue": float64(l.charged - l.refunded),
	}, problems...)
}

func TestSchemaInvalidEventIsDeadLettered(t *testing.T) {
	h := newShop(t)
	// A CustomerRegistered that breaks its schema (no address, bad e-mail),
	// published straight on the bus as a careless client would.
	bad := map[string]any{"customer_id": "cus-bad", "name": "x", "email": "not-an-email", "registered_at": time.Now().UTC()}
	if err := events.Publish(context.Background(), h.deps.Bus, schemas.TopicCustomerRegistered, "bad-1", bad); err != nil {
		t.Fatal(err)
	}
	var dls []events.DeadLetter
	sagatest.Poll(t, 15*time.Second, func() bool {
		dls, _ = h.deps.Bus.DeadLetters(context.Background())
		return len(dls) >= 2 // shipping and notification each refuse it
	}, func() string { return fmt.Sprintf("dead letters: %+v", dls) })
	for _, d := range dls {
		if !strings.Contains(d.Reason, "schema-invalid CustomerRegistered") {
			t.Errorf("reason %q", d.Reason)
		}
	}
	if shipping.KnowsCustomer(context.Background(), h.deps, "cus-bad") {
		t.Error("shipping stored the invalid customer")
	}
	if _, res := h.do("GET", "/api/customers", nil, h.asOperator()...); strings.Contains(fmt.Sprint(res), "cus-bad") {
		t.Error("the gateway's view took the invalid customer")
	}
	// The shop goes on.
	ada := h.register("ada", "FR")
	h.await(h.order(ada, okCard, shoptest.Item("sku-mug", 1)), "confirmed", 20*time.Second)
}

func TestCheckerFindsWhatIsWrong(t *testing.T) {
	h := newShop(t)
	ada := h.register("ada", "FR")
	good := h.order(ada, okCard, shoptest.Item("sku-mug", 1))
	soldOut := h.order(ada, okCard, shoptest.Item("sku-sold-out", 1))
	h.await(good, "confirmed", 20*time.Second)
	h.await(soldOut, "rejected", 20*time.Second)
	ctx := context.Background()
	rep, err := checker.Check(ctx, h.deps, []string{good, soldOut})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("a clean run is not clean: %s %v", rep.Summary(0), rep.Problems)
	}
	t.Log(rep.Summary(0))
	// Tamper with the ledgers as a bug would: a second charge, and an
	// invoice left live on a compensated order.
	pay, _ := kit.OpenStore(ctx, h.deps.JS, "payment")
	if _, err := kit.Update(ctx, pay, "pay-"+good, func(c *payment.Charge) (bool, error) { c.Charges = 2; return true, nil }); err != nil {
		t.Fatal(err)
	}
	bill, _ := kit.OpenStore(ctx, h.deps.JS, "billing")
	if _, err := kit.Update(ctx, bill, "inv-"+soldOut, func(i *billing.Invoice) (bool, error) {
		*i = billing.Invoice{ID: "inv-" + soldOut, OrderID: soldOut, Status: "issued", Issued: 1}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	rep, err = checker.Check(ctx, h.deps, []string{good, soldOut, "ord-never-placed"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.DoubleEffects != 1 || rep.PartialEffects != 1 || rep.Lost != 1 || rep.OK() {
		t.Errorf("checker missed what is wrong: %s %v", rep.Summary(0), rep.Problems)
	}
}
