package schemas_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden examples in testdata/ from the fixtures")

var t0 = time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC)

var addr = schemas.Address{Line1: "1 Rue de Rivoli", City: "Paris", Postcode: "75001", Country: "FR"}

// fixtures are the golden examples, one per event type.
var fixtures = map[string]any{
	"CustomerRegistered": schemas.CustomerRegistered{CustomerID: "cus-1", Name: "Ada Lovelace", Email: "ada@example.com", Address: addr, RegisteredAt: t0},
	"OrderPlaced": schemas.OrderPlaced{OrderID: "ord-1", CustomerID: "cus-1", Items: []schemas.Item{{SKU: "sku-mug", Qty: 2, UnitPrice: 1250}},
		Total: 2500, Currency: "EUR", Card: schemas.Card{Token: "tok_ABCDEFGHIJKLMNOPQRSTUVWXYZ", Brand: "visa", Last4: "4242"}, PlacedAt: t0},
	"PaymentSucceeded":  schemas.PaymentSucceeded{PaymentID: "pay-ord-1", OrderID: "ord-1", Time: t0, Amount: 2500, Currency: "EUR"},
	"PaymentDeclined":   schemas.PaymentDeclined{OrderID: "ord-2", Reason: "card declined", Amount: 900, Time: t0},
	"PaymentRefunded":   schemas.PaymentRefunded{PaymentID: "pay-ord-1", OrderID: "ord-1", Amount: 2500, Currency: "EUR", Time: t0},
	"StockReserved":     schemas.StockReserved{ReservationID: "res-ord-1", OrderID: "ord-1", Items: []schemas.Item{{SKU: "sku-mug", Qty: 2, UnitPrice: 1250}}, Time: t0},
	"InvoiceIssued":     schemas.InvoiceIssued{InvoiceID: "inv-ord-1", OrderID: "ord-1", Amount: 2500, Currency: "EUR", IssuedAt: t0},
	"DeliveryScheduled": schemas.DeliveryScheduled{DeliveryID: "del-ord-1", OrderID: "ord-1", Address: addr, ScheduledFor: t0.Add(48 * time.Hour)},
	"DeliveryBooked":    schemas.DeliveryBooked{DeliveryID: "del-ord-1", OrderID: "ord-1", ScheduledFor: t0.Add(48 * time.Hour)},
	"OrderConfirmed":    schemas.OrderConfirmed{OrderID: "ord-1", CustomerID: "cus-1", Total: 2500, Currency: "EUR", ConfirmedAt: t0},
	"OrderRejected":     schemas.OrderRejected{OrderID: "ord-2", CustomerID: "cus-1", Reason: "step charge: card declined", RejectedAt: t0},
	"StockChanged":      schemas.StockChanged{Version: 7, Levels: []schemas.StockLevel{{SKU: "sku-mug", Stock: 498}, {SKU: "sku-sold-out", Stock: 0}}, Time: t0},
	"PickupRequested":   schemas.PickupRequested{DeliveryID: "del-ord-1", OrderID: "ord-1", Attempt: 1, RequestedAt: t0.Add(time.Minute)},
	"ParcelDelivered":   schemas.ParcelDelivered{DeliveryID: "del-ord-1", OrderID: "ord-1", Carrier: "choreo-express", DeliveredAt: t0.Add(48 * time.Hour)},
}

func TestEveryTypeHasSchemaAndGolden(t *testing.T) {
	for name := range schemas.Types {
		if _, ok := fixtures[name]; !ok {
			t.Errorf("%s has no fixture", name)
		}
		if _, err := schemas.Schema(name); err != nil {
			t.Errorf("%s has no schema: %v", name, err)
		}
	}
	for topic, name := range schemas.TypeOfTopic {
		if _, ok := schemas.Types[name]; !ok {
			t.Errorf("topic %s names unknown type %s", topic, name)
		}
	}
}

func TestGoldenExamples(t *testing.T) {
	for name, v := range fixtures {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name+".json")
			want, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, '\n')
			if *update {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			golden, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./schemas -update to write it)", err)
			}
			// The golden example still decodes, strictly, into the Go type,
			// and the Go type still writes it byte for byte.
			ptr := reflect.New(reflect.TypeOf(v))
			dec := json.NewDecoder(bytes.NewReader(golden))
			dec.DisallowUnknownFields()
			if err := dec.Decode(ptr.Interface()); err != nil {
				t.Fatalf("golden example no longer decodes: %v", err)
			}
			again, _ := json.MarshalIndent(ptr.Elem().Interface(), "", "  ")
			if !bytes.Equal(append(again, '\n'), golden) {
				t.Errorf("the Go type changed the golden example:\n%s\nwant\n%s", again, golden)
			}
			if !bytes.Equal(golden, want) {
				t.Errorf("fixture and golden example differ (run with -update if the change is meant)")
			}
			if err := schemas.Validate(name, golden); err != nil {
				t.Errorf("golden example is schema-invalid: %v", err)
			}
		})
	}
}

// TestGoTypesMatchSchemas fails when a Go type and its schema drift: a
// field added, removed or renamed on one side only, or a kind changed.
func TestGoTypesMatchSchemas(t *testing.T) {
	for name, v := range schemas.Types {
		t.Run(name, func(t *testing.T) {
			raw, _ := schemas.Schema(name)
			var s map[string]any
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Fatal(err)
			}
			compare(t, name, reflect.TypeOf(v), s)
		})
	}
}

func compare(t *testing.T, path string, typ reflect.Type, s map[string]any) {
	t.Helper()
	if typ == reflect.TypeOf(time.Time{}) {
		if s["type"] != "string" || s["format"] != "date-time" {
			t.Errorf("%s: a time must be a date-time string in the schema", path)
		}
		return
	}
	switch typ.Kind() {
	case reflect.Struct:
		if s["type"] != "object" || s["additionalProperties"] != false {
			t.Errorf("%s: want a closed object in the schema", path)
			return
		}
		props, _ := s["properties"].(map[string]any)
		var goFields, required []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := strings.Split(f.Tag.Get("json"), ",")
			if tag[0] == "" || tag[0] == "-" {
				t.Errorf("%s.%s has no json name", path, f.Name)
				continue
			}
			goFields = append(goFields, tag[0])
			if !slices.Contains(tag[1:], "omitempty") {
				required = append(required, tag[0])
			}
			ps, ok := props[tag[0]].(map[string]any)
			if !ok {
				t.Errorf("%s.%s: in the Go type, not in the schema", path, tag[0])
				continue
			}
			compare(t, path+"."+tag[0], f.Type, ps)
		}
		for k := range props {
			if !slices.Contains(goFields, k) {
				t.Errorf("%s.%s: in the schema, not in the Go type", path, k)
			}
		}
		var req []string
		for _, r := range s["required"].([]any) {
			req = append(req, r.(string))
		}
		sort.Strings(req)
		sort.Strings(required)
		if !slices.Equal(req, required) {
			t.Errorf("%s: schema requires %v, the Go type %v", path, req, required)
		}
	case reflect.Slice:
		items, _ := s["items"].(map[string]any)
		if s["type"] != "array" || items == nil {
			t.Errorf("%s: want an array in the schema", path)
			return
		}
		compare(t, path+"[]", typ.Elem(), items)
	case reflect.String:
		if s["type"] != "string" {
			t.Errorf("%s: Go string, schema %v", path, s["type"])
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		if s["type"] != "integer" {
			t.Errorf("%s: Go integer, schema %v", path, s["type"])
		}
	default:
		t.Errorf("%s: Go kind %v has no rule", path, typ.Kind())
	}
}

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name, typ, data, want string
	}{
		{"unknown type", "Nope", `{}`, "unknown event type"},
		{"not JSON", "OrderPlaced", `{`, "not JSON"},
		{"missing field", "PaymentSucceeded", `{"payment_id":"p","order_id":"o","time":"2026-01-01T00:00:00Z","amount":1}`, "currency"},
		{"unknown field", "OrderConfirmed", `{"order_id":"o","customer_id":"c","total":1,"currency":"EUR","confirmed_at":"2026-01-01T00:00:00Z","extra":1}`, "extra"},
		{"negative money", "InvoiceIssued", `{"invoice_id":"i","order_id":"o","amount":-5,"currency":"EUR","issued_at":"2026-01-01T00:00:00Z"}`, "/amount"},
		{"bad time", "OrderRejected", `{"order_id":"o","customer_id":"c","reason":"r","rejected_at":"yesterday"}`, "/rejected_at"},
		{"CRLF in a name", "CustomerRegistered", `{"customer_id":"c","name":"Eve\r\nBcc: victim@example.com","email":"e@example.com","address":{"line1":"l","city":"c","postcode":"p","country":"FR"},"registered_at":"2026-01-01T00:00:00Z"}`, "/name"},
		{"C1 in a city", "CustomerRegistered", `{"customer_id":"c","name":"n","email":"e@example.com","address":{"line1":"l","city":"c\u0085","postcode":"p","country":"FR"},"registered_at":"2026-01-01T00:00:00Z"}`, "/address/city"},
		{"bad email", "CustomerRegistered", `{"customer_id":"c","name":"n","email":"not-an-email","address":{"line1":"l","city":"c","postcode":"p","country":"FR"},"registered_at":"2026-01-01T00:00:00Z"}`, "/email"},
		{"empty items", "OrderPlaced", `{"order_id":"o","customer_id":"c","items":[],"total":0,"currency":"EUR","card":{"token":"tok_ABCDEFGHIJKLMNOPQRSTUVWXYZ","brand":"visa","last4":"4242"},"placed_at":"2026-01-01T00:00:00Z"}`, "/items"},
		// A card number where the token goes: never taken into an event.
		{"card number for a card", "OrderPlaced", `{"order_id":"o","customer_id":"c","items":[{"sku":"s","qty":1,"unit_price":1}],"total":1,"currency":"EUR","card":"4242424242424242","placed_at":"2026-01-01T00:00:00Z"}`, "/card"},
		{"card number for a token", "OrderPlaced", `{"order_id":"o","customer_id":"c","items":[{"sku":"s","qty":1,"unit_price":1}],"total":1,"currency":"EUR","card":{"token":"4242424242424242","brand":"visa","last4":"4242"},"placed_at":"2026-01-01T00:00:00Z"}`, "/card/token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := schemas.Validate(tc.typ, []byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error about %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "4242424242424242") {
				t.Errorf("Validate = %v: the message repeats the card number", err)
			}
		})
	}
}

func TestFlowIsWellFormed(t *testing.T) {
	var got [][]string // step names by position
	for _, s := range schemas.OrderFlow.Describe().Steps {
		for len(got) <= s.Position {
			got = append(got, nil)
		}
		got[s.Position] = append(got[s.Position], s.Name)
	}
	want := [][]string{{"charge"}, {"reserve", "invoice", "schedule"}, {"confirm"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flow steps %v, want %v", got, want)
	}
}

// The gateway's flow diagram and the operator tools read each step's owner
// and compensation from the flow definition.
func TestFlowDeclaresOwnersAndCompensations(t *testing.T) {
	want := map[string][2]string{
		"charge": {"payment", "refund"}, "reserve": {"inventory", "release"}, "invoice": {"billing", "void"},
		"schedule": {"shipping", "cancel"}, "confirm": {"order", ""},
	}
	steps := schemas.OrderFlow.Describe().Steps
	if len(steps) != len(want) {
		t.Fatalf("flow has %d steps, want %d", len(steps), len(want))
	}
	for _, s := range steps {
		if w, ok := want[s.Name]; !ok || s.Owner != w[0] || s.Undo != w[1] {
			t.Errorf("step %s: owner %q, undo %q; want %q, %q", s.Name, s.Owner, s.Undo, w[0], w[1])
		}
	}
	if s, ok := schemas.OrderFlow.Describe().Step("confirm"); !ok || s.Kind != describe.Pivot {
		t.Errorf("confirm is %+v, want the pivot", s)
	}
}
