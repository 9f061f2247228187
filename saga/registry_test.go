package saga_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// A participant may write the registry key of a flow it takes part in,
// with any value: the tools (Flows, the console, flows asyncapi) must not
// take what it wrote for another flow's definition, nor render markup,
// escapes or a drawing of two billion positions from it.
func TestFlowsRefusesForgedDefinitions(t *testing.T) {
	s := sagatest.NewServer(t)
	s.Client() // provisions choreo
	ctx := context.Background()
	_, js := s.Connect()
	kv, err := js.KeyValue(ctx, access.FlowsBucket)
	if err != nil {
		t.Fatal(err)
	}
	good := func(name string, version int) map[string]any {
		return map[string]any{"name": name, "version": version, "input": "shop.order.placed",
			"steps": []map[string]any{
				{"name": "charge", "position": 0, "kind": "compensatable", "owner": "payment", "undo": "refund", "event_type": "Charged"},
				{"name": "ship", "position": 1, "kind": "pivot", "owner": "shipping", "event_type": "Shipped"},
			}}
	}
	put := func(key string, v any) {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	step := func(d map[string]any, i int) map[string]any { return d["steps"].([]map[string]any)[i] }

	put("def.order.v1.payment", good("order", 1)) // the genuine one
	forged := map[string]func(d map[string]any){
		"names another flow":     func(d map[string]any) { d["name"] = "order" },
		"names another version":  func(d map[string]any) { d["version"] = 2 },
		"markup in a step name":  func(d map[string]any) { step(d, 0)["name"] = `</script><img src=x onerror=alert(1)>` },
		"markup in an owner":     func(d map[string]any) { step(d, 0)["owner"] = `"><img src=x onerror=alert(1)>` },
		"escape in an undo name": func(d map[string]any) { step(d, 0)["undo"] = "refund\x1b]52;c;ZWNobyBwd25lZA==\x07" },
		"newline in an event type": func(d map[string]any) {
			step(d, 1)["event_type"] = "Shipped\nclick s_ship href \"javascript:alert(1)\""
		},
		"bidi override in input":     func(d map[string]any) { d["input"] = "shop.order\u202eplaced" },
		"position two billion":       func(d map[string]any) { step(d, 1)["position"] = 2_000_000_000 },
		"negative position":          func(d map[string]any) { step(d, 1)["position"] = -1 },
		"positions out of order":     func(d map[string]any) { step(d, 0)["position"] = 1; step(d, 1)["position"] = 0 },
		"unknown kind":               func(d map[string]any) { step(d, 0)["kind"] = "x onclick" },
		"two steps of one name":      func(d map[string]any) { step(d, 1)["name"] = "charge" },
		"no steps":                   func(d map[string]any) { d["steps"] = []any{} },
		"starter not a service":      func(d map[string]any) { d["started_by"] = []string{"a b"} },
		"undo on a pivot":            func(d map[string]any) { step(d, 1)["undo"] = "unship" },
		"huge undo name":             func(d map[string]any) { step(d, 0)["undo"] = strings.Repeat("x", 100_000) },
		"negative deadline":          func(d map[string]any) { d["deadline"] = -1 },
		"a step name with a subject": func(d map[string]any) { step(d, 0)["name"] = "charge.>" },
	}
	i := 0
	names := map[string]string{}
	for what, forge := range forged {
		i++
		flow := "evil" + string(rune('a'+i))
		names[flow] = what
		d := good(flow, 1)
		forge(d)
		put("def."+flow+".v1.payment", d)
	}
	flows, err := s.Ops().Flows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 1 || flows[0].Name != "order" || flows[0].Version != 1 || flows[0].Steps[0].Owner != "payment" {
		for _, f := range flows {
			t.Errorf("listed: %s v%d (%s)", f.Name, f.Version, names[f.Name])
		}
		t.Fatalf("Flows lists %d definitions, want the genuine order v1 alone", len(flows))
	}
}

// A registered schema that is not one (a string, an array, a number) is
// not listed: the AsyncAPI document and the console take only JSON Schemas
// (objects, or true and false).
func TestFlowsDropsSchemasThatAreNotSchemas(t *testing.T) {
	s := sagatest.NewServer(t)
	s.Client() // provisions choreo
	ctx := context.Background()
	_, js := s.Connect()
	kv, err := js.KeyValue(ctx, access.FlowsBucket)
	if err != nil {
		t.Fatal(err)
	}
	d := `{"name":"order","version":1,"input":"Order","steps":[{"name":"charge","position":0,"kind":"pivot","owner":"payment","event_type":"Charged"}],` +
		`"schemas":{"Order":{"type":"object"},"Charged":"</script>","Other":{"type":"object"}}}`
	if _, err := kv.Put(ctx, "def.order.v1.payment", []byte(d)); err != nil {
		t.Fatal(err)
	}
	flows, err := s.Ops().Flows(ctx)
	if err != nil || len(flows) != 1 {
		t.Fatalf("flows %+v, %v", flows, err)
	}
	if len(flows[0].Schemas) != 1 || flows[0].Schemas["Order"] == nil {
		t.Errorf("schemas %v: want Order's alone (Charged's is a string, Other is no type of the flow)", flows[0].Schemas)
	}
	if _, err := describe.AsyncAPI(describe.AsyncAPIOptions{}, flows...); err != nil {
		t.Errorf("AsyncAPI of what Flows lists: %v", err)
	}
}

// AsyncAPI is given describe.Flow values: one that no Define could make is
// refused with an error, never a panic or a two-billion-entry slice.
func TestAsyncAPIRefusesMalformedFlows(t *testing.T) {
	base := func() describe.Flow {
		return describe.Flow{Name: "order", Version: 1, Input: "Order", Steps: []describe.Step{
			{Name: "charge", Position: 0, Kind: describe.Compensatable, EventType: "Charged"},
			{Name: "ship", Position: 1, Kind: describe.Pivot, EventType: "Shipped"},
		}}
	}
	if _, err := describe.AsyncAPI(describe.AsyncAPIOptions{}, base()); err != nil {
		t.Fatalf("a good flow: %v", err)
	}
	for what, change := range map[string]func(*describe.Flow){
		"negative position":    func(f *describe.Flow) { f.Steps[1].Position = -1 },
		"position 2e9":         func(f *describe.Flow) { f.Steps[1].Position = 2_000_000_000 },
		"step name with dots":  func(f *describe.Flow) { f.Steps[1].Name = "a.{sagaId}" },
		"owner with markup":    func(f *describe.Flow) { f.Steps[1].Owner = "<b>" },
		"schema not an object": func(f *describe.Flow) { f.Schemas = map[string]json.RawMessage{"Order": json.RawMessage(`[1,2]`)} },
	} {
		f := base()
		change(&f)
		doc, err := describe.AsyncAPI(describe.AsyncAPIOptions{}, f)
		if what == "schema not an object" {
			// Left out of the document, the rest described.
			var d struct {
				Components struct {
					Messages map[string]struct{ Payload any }
				}
			}
			if err != nil || json.Unmarshal(doc, &d) != nil || d.Components.Messages["Order"].Payload != nil {
				t.Errorf("%s: %v: Order's payload %v", what, err, d.Components.Messages["Order"].Payload)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "order") {
			t.Errorf("%s: %v, want an error naming the flow", what, err)
		}
	}
}

// One flow's schema for an event type cannot change how another flow's
// message of that type reads, and types whose ids clash stay apart.
func TestAsyncAPIKeepsFlowsMessagesApart(t *testing.T) {
	flow := func(name, out string, schema string) describe.Flow {
		return describe.Flow{Name: name, Version: 1, Input: "Order", Steps: []describe.Step{
			{Name: "charge", Position: 0, Kind: describe.Pivot, EventType: out},
		}, Schemas: map[string]json.RawMessage{out: json.RawMessage(schema)}}
	}
	doc, err := describe.AsyncAPI(describe.AsyncAPIOptions{},
		flow("a", "Charged", `{"type":"object","description":"a's"}`),
		flow("b", "Charged", `{"type":"string","description":"b's"}`),
		flow("c", "Charged", `{"type":"object","description":"a's"}`),
		flow("d", "Char.ged", `{"type":"object"}`),
		flow("e", "Char_ged", `{"type":"object"}`),
	)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Channels map[string]struct {
			Messages map[string]struct {
				Ref string `json:"$ref"`
			}
		}
		Components struct {
			Messages map[string]struct{ Name, Summary string }
		}
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	msg := func(ch string) (string, string) {
		for id, m := range d.Channels[ch].Messages {
			return id, d.Components.Messages[strings.TrimPrefix(m.Ref, "#/components/messages/")].Summary
		}
		return "", ""
	}
	if id, sum := msg("a_v1_charge_done"); id != "Charged" || sum != "a's" {
		t.Errorf("a: %s %q", id, sum)
	}
	if id, sum := msg("b_v1_charge_done"); id != "Charged__b_v1" || sum != "b's" {
		t.Errorf("b: %s %q", id, sum)
	}
	if id, _ := msg("c_v1_charge_done"); id != "Charged" {
		t.Errorf("c, with a's schema, does not share a's message: %s", id)
	}
	idD, _ := msg("d_v1_charge_done")
	idE, _ := msg("e_v1_charge_done")
	if idD == idE || d.Components.Messages[idE].Name != "Char_ged" || d.Components.Messages[idD].Name != "Char.ged" {
		t.Errorf("Char.ged and Char_ged share %s / %s", idD, idE)
	}
	// Mermaid of a value not from Define does not panic.
	bad := flow("x", "Y", `{}`)
	bad.Steps[0].Position = -1
	_ = bad.Mermaid()
}
