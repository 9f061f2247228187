package sagatest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// asyncAPISchemaJSON is the structure of an AsyncAPI 3.0.0 document,
// written for choreo from the specification's text (its description says
// why it is not the AsyncAPI Initiative's published file).
//
//go:embed testdata/asyncapi-3.0.0.schema.json
var asyncAPISchemaJSON []byte

var asyncAPISchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(asyncAPISchemaJSON))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.AssertFormat()
	if err := c.AddResource("asyncapi-3.0.0.schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("asyncapi-3.0.0.schema.json")
})

var addressParam = regexp.MustCompile(`\{([^}]+)\}`)

// ValidAsyncAPI checks that doc is an AsyncAPI 3.0.0 document: it is
// valid against the JSON Schema of the specification's structure (in
// testdata), and it keeps the rules a JSON Schema cannot say: every local
// $ref resolves, an operation's messages are its channel's, and a
// channel's address parameters are the ones it declares. Use it on what
// saga.AsyncAPI writes for your flows.
func ValidAsyncAPI(doc []byte) error {
	s, err := asyncAPISchema()
	if err != nil {
		return fmt.Errorf("sagatest: the AsyncAPI schema: %w", err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := s.Validate(v); err != nil {
		return err
	}
	var d map[string]any
	if err := json.Unmarshal(doc, &d); err != nil {
		return err
	}
	var refs []string
	collectRefs(d, &refs)
	for _, r := range refs {
		if strings.HasPrefix(r, "#") {
			if _, ok := jsonPointer(d, r); !ok {
				return fmt.Errorf("$ref %s resolves to nothing", r)
			}
		}
	}
	ops, _ := d["operations"].(map[string]any)
	for _, id := range sortedKeys(ops) {
		op, _ := ops[id].(map[string]any)
		ch, _ := op["channel"].(map[string]any)["$ref"].(string)
		msgs, _ := op["messages"].([]any)
		for _, m := range msgs {
			if r, _ := m.(map[string]any)["$ref"].(string); !strings.HasPrefix(r, ch+"/messages/") {
				return fmt.Errorf("operation %s: message %s is not one of its channel %s's", id, r, ch)
			}
		}
	}
	chans, _ := d["channels"].(map[string]any)
	for _, id := range sortedKeys(chans) {
		ch, _ := chans[id].(map[string]any)
		addr, _ := ch["address"].(string)
		var used, declared []string
		for _, m := range addressParam.FindAllStringSubmatch(addr, -1) {
			used = append(used, m[1])
		}
		params, _ := ch["parameters"].(map[string]any)
		declared = sortedKeys(params)
		sort.Strings(used)
		if !slices.Equal(used, declared) {
			return fmt.Errorf("channel %s: address %q has parameters %v, but %v are declared", id, addr, used, declared)
		}
	}
	return nil
}

func collectRefs(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" {
				*out = append(*out, s)
			}
			collectRefs(x, out)
		}
	case []any:
		for _, x := range v {
			collectRefs(x, out)
		}
	}
}

// jsonPointer resolves a local reference (#/a/b) in d.
func jsonPointer(d any, ref string) (any, bool) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, false
	}
	cur := d
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
