package schemas_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
)

// shopDoc is the AsyncAPI document of the shop's order flow, every
// version, with the schemas from schemas/.
func shopDoc(t *testing.T) []byte {
	t.Helper()
	var infos []describe.Flow
	for _, f := range []*saga.Flow[schemas.OrderPlaced]{schemas.OrderFlow, schemas.OrderFlowV2, schemas.OrderFlowV3, schemas.OrderFlowV4} {
		infos = append(infos, f.Describe().WithSchemas(schemas.Schema))
	}
	doc, err := describe.AsyncAPI(describe.AsyncAPIOptions{Server: "127.0.0.1:4222"}, infos...)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestAsyncAPIIsValid(t *testing.T) {
	doc := shopDoc(t)
	if err := sagatest.ValidAsyncAPI(doc); err != nil {
		t.Fatalf("the document is not AsyncAPI 3.0.0: %v", err)
	}
	if n := strings.Count(string(doc), `"$ref"`); n < 50 {
		t.Fatalf("only %d references in the document", n)
	}
}

func TestAsyncAPIDescribesTheShop(t *testing.T) {
	doc := shopDoc(t)
	var d struct {
		Info     struct{ Version string }
		Channels map[string]struct {
			Address  string
			Messages map[string]struct {
				Ref string `json:"$ref"`
			}
			Parameters map[string]struct{ Enum []string }
		}
		Operations map[string]struct {
			Action  string
			Channel struct {
				Ref string `json:"$ref"`
			}
			Services []string `json:"x-choreo-service"`
		}
		Components struct {
			Messages map[string]struct {
				Name    string
				Payload *struct {
					SchemaFormat string
					Schema       json.RawMessage
				}
			}
		}
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	if d.Info.Version != "order-v1+order-v2+order-v3+order-v4" {
		t.Errorf("info.version %q", d.Info.Version)
	}
	ch := d.Channels["order_v2_charge_done"]
	if ch.Address != "choreo.log.order.{sagaId}.v2.charge.done" {
		t.Errorf("charge done address %q", ch.Address)
	}
	if _, ok := ch.Messages["PaymentSucceeded"]; !ok {
		t.Errorf("charge done carries %v, want PaymentSucceeded", ch.Messages)
	}
	if got := d.Channels["order_v2_charge_undo"].Address; got != "choreo.cmd.order.{sagaId}.v2.charge.undo" {
		t.Errorf("refund command address %q", got)
	}
	if _, ok := d.Channels["order_v2_confirm_undo"]; ok {
		t.Error("the pivot has a compensation channel")
	}
	if _, ok := d.Channels["order_v2_invoice_done"]; ok {
		t.Error("v2 has an invoice step")
	}
	if !slices.Contains(d.Channels["order_v1_invoice_outcome"].Parameters["phase"].Enum, "parked") {
		t.Error("a compensatable step's outcomes do not include parked")
	}
	if slices.Contains(d.Channels["order_v2_bill_outcome"].Parameters["phase"].Enum, "compensated") {
		t.Error("a retriable step's outcomes include compensated")
	}
	// Owners: each operation names the service that owns it.
	for id, want := range map[string]string{
		"order_v2_start_send":            "order",
		"order_v2_charge_take":           "payment",
		"order_v2_charge_done_send":      "payment",
		"order_v2_charge_undo_receive":   "payment",
		"order_v2_reserve_take_charge":   "inventory",
		"order_v2_confirm_take_reserve":  "order",
		"order_v2_confirm_take_schedule": "order",
		"order_v2_bill_take_confirm":     "billing",
		"order_v1_invoice_undo_receive":  "billing",
		"order_v1_schedule_outcome_send": "shipping",
		"order_v2_reserve_undo_receive":  "inventory",
		"order_v2_schedule_take_charge":  "shipping",
		"order_v1_confirm_take_invoice":  "order",
		"order_v1_confirm_outcome_send":  "order",
		"order_v2_charge_outcome_send":   "payment",
		"order_v2_bill_done_send":        "billing",
		"order_v1_reserve_outcome_send":  "inventory",
		"order_v1_charge_take":           "payment",
		"order_v1_start_send":            "order",
		"order_v1_invoice_take_charge":   "billing",
		"order_v2_schedule_undo_receive": "shipping",
		"order_v1_schedule_undo_receive": "shipping",
		"order_v1_reserve_undo_receive":  "inventory",
		"order_v2_confirm_done_send":     "order",
		"order_v1_confirm_done_send":     "order",
		"order_v1_charge_undo_receive":   "payment",
		"order_v2_schedule_done_send":    "shipping",
		"order_v1_reserve_done_send":     "inventory",
		"order_v1_invoice_done_send":     "billing",
		"order_v1_schedule_take_charge":  "shipping",
		"order_v1_confirm_take_schedule": "order",
		"order_v1_reserve_take_charge":   "inventory",
		"order_v2_reserve_outcome_send":  "inventory",
		"order_v2_confirm_outcome_send":  "order",
		"order_v2_bill_outcome_send":     "billing",
		"order_v2_schedule_outcome_send": "shipping",
		"order_v1_invoice_outcome_send":  "billing",
		"order_v1_charge_outcome_send":   "payment",
		"order_v1_charge_done_send":      "payment",
		"order_v1_confirm_take_reserve":  "order",
		"order_v1_schedule_done_send":    "shipping",
		"order_v2_reserve_done_send":     "inventory",
	} {
		op, ok := d.Operations[id]
		if !ok {
			t.Errorf("no operation %s", id)
			continue
		}
		if !slices.Equal(op.Services, []string{want}) {
			t.Errorf("operation %s: services %v, want %s", id, op.Services, want)
		}
	}
	if got := d.Operations["order_v2_charge_take"].Channel.Ref; got != "#/channels/order_v2_start" {
		t.Errorf("charge is triggered by %s", got)
	}
	if got := d.Operations["order_v2_timers_receive"].Services; !slices.Equal(got, []string{"billing", "inventory", "order", "payment", "shipping"}) {
		t.Errorf("v2 timers received by %v", got)
	}
	// Each message's payload is the JSON Schema from schemas/, and the
	// schemas' own examples are valid against it.
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for name, m := range d.Components.Messages {
		if m.Payload == nil {
			continue
		}
		if m.Payload.SchemaFormat != "application/schema+json;version=draft-2020-12" {
			t.Errorf("%s: schema format %q", name, m.Payload.SchemaFormat)
		}
		want, err := schemas.Schema(m.Name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var a, b any
		_ = json.Unmarshal(want, &a)
		_ = json.Unmarshal(m.Payload.Schema, &b)
		if !jsonEqual(a, b) {
			t.Errorf("%s: the payload is not the schema in schemas/", name)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Payload.Schema))
		if err != nil {
			t.Fatal(err)
		}
		url := "mem://" + name
		if err := c.AddResource(url, doc); err != nil {
			t.Fatal(err)
		}
		s, err := c.Compile(url)
		if err != nil {
			t.Fatalf("%s: the payload schema does not compile: %v", name, err)
		}
		example, err := os.ReadFile(filepath.Join("testdata", m.Name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(example))
		if err := s.Validate(v); err != nil {
			t.Errorf("%s: the example is not valid against the document's payload: %v", name, err)
		}
	}
	for _, want := range []string{"OrderPlaced", "PaymentSucceeded", "StockReserved", "InvoiceIssued", "DeliveryScheduled", "DeliveryBooked", "OrderConfirmed"} {
		if m, ok := d.Components.Messages[want]; !ok || m.Payload == nil {
			t.Errorf("message %s missing or without its payload", want)
		}
	}
}

// sagatest.ValidAsyncAPI has teeth: documents that break the AsyncAPI
// 3.0.0 rules are refused.
func TestAsyncAPISchemaRefusesBrokenDocuments(t *testing.T) {
	for name, breakIt := range map[string]func(d map[string]any){
		"version 2.6.0":            func(d map[string]any) { d["asyncapi"] = "2.6.0" },
		"no info.version":          func(d map[string]any) { delete(d["info"].(map[string]any), "version") },
		"a 2.x publish action":     func(d map[string]any) { anyOf(d, "operations")["action"] = "publish" },
		"an operation, no channel": func(d map[string]any) { delete(anyOf(d, "operations"), "channel") },
		"an unknown field":         func(d map[string]any) { d["subscribe"] = map[string]any{} },
		"a slash in a message id": func(d map[string]any) {
			d["components"].(map[string]any)["messages"].(map[string]any)["a/b"] = map[string]any{"name": "x"}
		},
		"a dot in a parameter name": func(d map[string]any) {
			anyOf(d, "channels")["parameters"].(map[string]any)["saga.id"] = map[string]any{}
		},
		"a server without protocol": func(d map[string]any) {
			delete(d["servers"].(map[string]any)["nats"].(map[string]any), "protocol")
		},
		"headers not an object": func(d map[string]any) {
			anyOf(d["components"].(map[string]any), "messages")["headers"] = map[string]any{"type": "string"}
		},
		"a dangling $ref": func(d map[string]any) {
			anyOf(d, "operations")["channel"] = map[string]any{"$ref": "#/channels/nowhere"}
		},
		"an operation with another channel's message": func(d map[string]any) {
			ops := d["operations"].(map[string]any)
			ops["order_v2_charge_done_send"].(map[string]any)["messages"] = []any{map[string]any{"$ref": "#/channels/order_v2_start/messages/OrderPlaced"}}
		},
		"an undeclared address parameter": func(d map[string]any) {
			ch := d["channels"].(map[string]any)["order_v2_timers"].(map[string]any)
			ch["address"] = "choreo.timer.order.{sagaId}.{version}"
		},
		"a bad parameter location": func(d map[string]any) {
			ps := anyOf(d, "channels")["parameters"].(map[string]any)
			ps["sagaId"].(map[string]any)["location"] = "header.id"
		},
	} {
		var d map[string]any
		if err := json.Unmarshal(shopDoc(t), &d); err != nil {
			t.Fatal(err)
		}
		breakIt(d)
		doc, _ := json.Marshal(d)
		if err := sagatest.ValidAsyncAPI(doc); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A runner registers its flows with their schemas, and a client that was
// not compiled with them writes the same document from the registry.
func TestAsyncAPIFromTheRegistry(t *testing.T) {
	srv := sagatest.NewServer(t)
	r, err := saga.NewRunner(srv.Client(), saga.WithSchemas(schemas.Schema))
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, schemas.Charge, func(context.Context, schemas.OrderPlaced) (schemas.PaymentSucceeded, error) {
		return schemas.PaymentSucceeded{}, nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, schemas.ConfirmedCharge, func(context.Context, schemas.OrderPlaced) (schemas.PaymentSucceeded, error) {
		return schemas.PaymentSucceeded{}, nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	var flows []describe.Flow
	sagatest.Poll(t, 20*time.Second, func() bool {
		flows, err = srv.Ops().Flows(context.Background())
		return err == nil && len(flows) == 4
	}, func() string { return "the runner did not register the order flow's four versions" })
	for _, f := range flows {
		if len(f.Schemas) == 0 {
			t.Fatalf("%s v%d registered without schemas", f.Name, f.Version)
		}
	}
	got, err := describe.AsyncAPI(describe.AsyncAPIOptions{Server: "127.0.0.1:4222"}, flows...)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonBytesEqual(got, shopDoc(t)) {
		t.Error("the document from the registry is not the one from the definitions")
	}
	if err := sagatest.ValidAsyncAPI(got); err != nil {
		t.Fatal(err)
	}
	if _, err := describe.AsyncAPI(describe.AsyncAPIOptions{}); err == nil {
		t.Error("AsyncAPI of no flow succeeded")
	}
}

func anyOf(d map[string]any, key string) map[string]any {
	m := d[key].(map[string]any)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return m[keys[0]].(map[string]any)
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func jsonBytesEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && jsonEqual(x, y)
}
