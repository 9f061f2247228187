package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/shipping"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// Every participant of a flow can read every event of its sagas, so the
// sagas carry ids, never personal data: no customer's name, e-mail or
// address is in any saga's state, timeline, or any message of the saga
// streams (CHOREO, CHOREO_TIMERS, CHOREO_DLQ), for orders that confirm and
// orders undone at the delivery step. The address stays in the services
// that own it (customer) or need it (shipping, by the customer's id). The
// same scan finds them in CustomerRegistered, the customer's own event: it
// would see them in a saga too.
func TestNoPersonalDataInSagas(t *testing.T) {
	h := newShop(t)
	type person struct{ name, email, line1, city, postcode, country string }
	people := []person{
		{"Zelda Quintessa", "zelda.q@example.org", "77 Obscure Lane", "Vexbridge", "QX-7711", "FR"},
		{"Borealis Hutkeeper", "borealis.h@example.org", "3 Frozen Pier", "Frostvale", "AQ-0042", "AQ"},
	}
	var custs []shoptest.Customer
	for _, p := range people {
		code, res := h.do("POST", "/api/customers", map[string]any{"name": p.name, "email": p.email,
			"address": map[string]string{"line1": p.line1, "city": p.city, "postcode": p.postcode, "country": p.country}})
		if code != 201 {
			t.Fatalf("register %s: %d %v", p.name, code, res)
		}
		c := shoptest.Customer{ID: res["id"].(string), Token: res["token"].(string)}
		custs = append(custs, c)
	}
	for _, c := range custs {
		// The gateway knows the customer, and shipping has its address.
		h.awaitCustomer(c)
	}
	orders := map[string]string{
		h.order(custs[0], okCard, shoptest.Item("sku-mug", 1)):       "confirmed",
		h.order(custs[0], okCard, shoptest.Item("sku-sold-out", 1)):  "rejected",
		h.order(custs[1], okCard, shoptest.Item("sku-sticker", 1)):   "rejected", // not delivered to AQ: book fails
		h.order(custs[0], declinedCard, shoptest.Item("sku-tee", 1)): "rejected",
	}
	for id, status := range orders {
		h.await(id, status, 30*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var secrets []string
	for _, p := range people {
		secrets = append(secrets, p.name, p.email, p.line1, p.city, p.postcode)
	}
	leaks := func(text string) []string {
		var out []string
		for _, s := range secrets {
			if strings.Contains(text, s) {
				out = append(out, s)
			}
		}
		return out
	}
	for id := range orders {
		st, err := h.deps.Sagas.Get(ctx, schemas.OrderFlow, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Version != schemas.OrderFlowV4.Version() {
			t.Errorf("order %s runs on version %d, want %d", id, st.Version, schemas.OrderFlowV4.Version())
		}
		b, _ := json.Marshal(st)
		if l := leaks(string(b)); l != nil {
			t.Errorf("saga %s's state holds %q", id, l)
		}
		tl, err := h.deps.Sagas.Timeline(ctx, schemas.OrderFlow, id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = json.Marshal(tl)
		if l := leaks(string(b)); l != nil {
			t.Errorf("saga %s's timeline holds %q", id, l)
		}
	}
	scan := func(stream string, each func(where, text string)) int {
		t.Helper()
		s, err := h.deps.JS.Stream(ctx, stream)
		if err != nil {
			t.Fatalf("stream %s: %v", stream, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("%s #%d: %v", stream, seq, err)
			}
			n++
			var hdr strings.Builder
			for k, vs := range m.Header {
				fmt.Fprintf(&hdr, "%s: %s\n", k, strings.Join(vs, ", "))
			}
			each(fmt.Sprintf("%s #%d (%s)", stream, seq, m.Subject), m.Subject+"\n"+hdr.String()+"\n"+string(m.Data))
		}
		return n
	}
	scanned := 0
	for _, stream := range []string{"CHOREO", "CHOREO_TIMERS", "CHOREO_DLQ"} {
		scanned += scan(stream, func(where, text string) {
			if l := leaks(text); l != nil {
				t.Errorf("%s holds %q: %.400s", where, l, text)
			}
		})
	}
	if scanned < 5*len(orders) { // a start and at least four outcomes each
		t.Errorf("scanned %d messages of the saga streams: too few to mean anything", scanned)
	}
	// The scan would see them: the customer's own event carries them.
	seen := map[string]bool{}
	scan("CHOREO_EVENTS", func(_, text string) {
		for _, s := range leaks(text) {
			seen[s] = true
		}
	})
	if len(seen) != len(secrets) {
		t.Errorf("the scan found %d of the %d personal data in the customers' own events: it cannot see them", len(seen), len(secrets))
	}
	// Shipping addressed the confirmed order from its own copy.
	dels, err := shipping.Deliveries(ctx, h.deps)
	if err != nil {
		t.Fatal(err)
	}
	addressed := false
	for _, d := range dels {
		addressed = addressed || d.Status == "scheduled" && d.Address.Line1 == people[0].line1
	}
	if !addressed {
		t.Errorf("no delivery to %s in shipping's records: %+v", people[0].line1, dels)
	}
	t.Logf("scanned %d messages of the saga streams", scanned)
}

// awaitCustomer waits until the gateway and shipping know c.
func (h *shopHarness) awaitCustomer(c shoptest.Customer) {
	h.t.Helper()
	var code int
	sagatest.Poll(h.t, 30*time.Second, func() bool {
		code, _ = h.do("GET", "/api/customers/"+c.ID, nil, c.Auth()...)
		return code == 200 && shipping.KnowsCustomer(context.Background(), h.deps, c.ID)
	}, func() string {
		return fmt.Sprintf("customer %s unknown to the gateway (%d) or to shipping", c.ID, code)
	})
}
