// Package describe turns flow definitions into what people and tools read:
// a Flow value (what a runner registers in the broker, what the operator
// tools list), a Mermaid drawing of it, and an AsyncAPI 3.0 document of the
// subjects its sagas use. Everything here is generated from the
// definitions, so it cannot drift from what runs.
//
// Describe a compiled flow with its Info method (saga.Flow.Describe); list the
// flows a running system registered with ops.Client.Flows.
package describe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/choreo-go/choreo/internal/wire"
)

// StepKind classifies a step the way Garcia-Molina and Richardson do.
type StepKind string

const (
	// Compensatable steps come before the pivot and are undone, in reverse
	// order of completion, when the saga fails (the default).
	Compensatable StepKind = "compensatable"
	// Pivot is the go/no-go step: once it completes the saga can only go
	// forward. It has no compensation.
	Pivot StepKind = "pivot"
	// Retriable steps follow the pivot: retried until they succeed, never
	// compensated.
	Retriable StepKind = "retriable"
)

// Flow is a flow version as declared: what it is, for tools that are not
// compiled with the flow (the operator CLI reads it from the registry).
type Flow struct {
	Name      string        `json:"name"`
	Version   int           `json:"version"`
	Input     string        `json:"input"` // the CloudEvents type of the start event
	StartedBy []string      `json:"started_by,omitempty"`
	Deadline  time.Duration `json:"deadline,omitempty"`
	Steps     []Step        `json:"steps"`
	// Attrs are the flow's search attributes (saga.Attr): what its sagas
	// are found by.
	Attrs []Attr `json:"attrs,omitempty"`
	// Schemas are the JSON Schemas of the flow's event types (its input
	// and each step's result), by CloudEvents type, as the registering
	// runner's saga.WithSchemas gave them; a type without one is absent.
	Schemas map[string]json.RawMessage `json:"schemas,omitempty"`
	// AttestedBy are the step owners whose runners registered this
	// definition, and NotAttestedBy those that did not (their runners
	// have not started): the registry lists a definition only when every
	// owner that registered one registered this one. Set by the tools that
	// read the registry (ops.Client.Flows), not by a runner.
	AttestedBy    []string `json:"attested_by,omitempty"`
	NotAttestedBy []string `json:"not_attested_by,omitempty"`
}

// Step describes one step of a flow, as declared.
type Step struct {
	Name      string        `json:"name"`
	Position  int           `json:"position"` // steps of one Parallel group share a position
	Kind      StepKind      `json:"kind"`
	Owner     string        `json:"owner,omitempty"`      // the service that runs it (saga.Owner), "" if undeclared
	Undo      string        `json:"undo,omitempty"`       // its compensation's name (saga.Undo), "" if undeclared
	EventType string        `json:"event_type"`           // the CloudEvents type of its result
	Timeout   time.Duration `json:"timeout_ns,omitempty"` // its action's timeout (saga.WithTimeout), in nanoseconds
	// A step completed later (saga.WaitsFor) waits on WaitsOn ("customer")
	// for at most Wait; one completed by a domain event (saga.CompletesOn)
	// names the event's topic and the field that holds the saga id.
	WaitsOn string        `json:"waits_on,omitempty"`
	Wait    time.Duration `json:"wait_ns,omitempty"`
	OnTopic string        `json:"on_topic,omitempty"`
	OnField string        `json:"on_field,omitempty"`
	// InputFrom is where the step's input comes from when it is not the
	// chain's (the previous single step's result, or the flow's input
	// first and after a Parallel group): the name of the earlier step
	// whose result it takes (saga.InputFrom), or FromFlow (saga.FlowInput).
	InputFrom string `json:"input_from,omitempty"`
	// A step that runs another flow as a child saga (saga.NewChild)
	// names that flow and its version.
	Child        string `json:"child,omitempty"`
	ChildVersion int    `json:"child_version,omitempty"`
}

// Attr describes a search attribute of a flow: its name, the type of its
// values ("string" or "number"), and the step whose result it is computed
// from ("" for the saga's input, computed by its starter).
type Attr struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	Step string `json:"step,omitempty"`
}

// Attr describes the named search attribute; ok is false when the flow
// has none.
func (f Flow) Attr(name string) (Attr, bool) {
	for _, a := range f.Attrs {
		if a.Name == name {
			return a, true
		}
	}
	return Attr{}, false
}

// FromFlow is Step.InputFrom for a step that takes the flow's input where
// the chain would give it a step's result. No step has this name.
const FromFlow = "_flow"

// Step describes the named step; ok is false when the flow has none.
func (f Flow) Step(name string) (Step, bool) {
	for _, s := range f.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return Step{}, false
}

// WithSchemas returns f with Schemas filled in by schemaOf, for each of its
// event types (the input and each step's result); a type the lookup has no
// schema for, or whose schema is not one (a JSON object, true or false), is
// left out. Runners do this when they register (saga.WithSchemas); call it
// to describe a compiled flow the same way, for AsyncAPI.
func (f Flow) WithSchemas(schemaOf func(eventType string) ([]byte, error)) Flow {
	f.Schemas = nil
	out := map[string]json.RawMessage{}
	types := []string{f.Input}
	for _, s := range f.Steps {
		types = append(types, s.EventType)
	}
	for _, t := range types {
		if _, ok := out[t]; ok || t == "" {
			continue
		}
		if raw, err := schemaOf(t); err == nil && isSchema(raw) {
			out[t] = raw
		}
	}
	if len(out) > 0 {
		f.Schemas = out
	}
	return f
}

// maxSteps and maxText bound a definition read from the registry.
const (
	maxSteps = 1000
	maxText  = 1024
	maxAttrs = 8
)

// Check reports why f is not a definition saga.Define could have made:
// names that are not tokens, steps out of order, text that is not one line
// of printable characters. Any participant of a flow may write its
// registry key, so tools check what they read before they draw it.
func (f Flow) Check() error {
	if !wire.Token(f.Name) {
		return fmt.Errorf("flow name %q: want 1-64 characters of [A-Za-z0-9_-]", f.Name)
	}
	if f.Version < 1 || f.Version > 1_000_000 {
		return fmt.Errorf("flow %s: version %d out of range", f.Name, f.Version)
	}
	if f.Deadline < 0 {
		return fmt.Errorf("flow %s: negative deadline", f.Name)
	}
	if err := text("input type", f.Input); err != nil {
		return fmt.Errorf("flow %s: %w", f.Name, err)
	}
	for _, svc := range f.StartedBy {
		if !wire.Token(svc) {
			return fmt.Errorf("flow %s: starter %q is no service name", f.Name, svc)
		}
	}
	if len(f.Steps) == 0 || len(f.Steps) > maxSteps {
		return fmt.Errorf("flow %s: %d steps, want 1 to %d", f.Name, len(f.Steps), maxSteps)
	}
	seen := map[string]bool{}
	posOf := map[string]int{}
	for i, s := range f.Steps {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("flow %s: step %q: %s", f.Name, s.Name, fmt.Sprintf(format, args...))
		}
		switch {
		case !wire.Token(s.Name):
			return bad("want 1-64 characters of [A-Za-z0-9_-]")
		case seen[s.Name]:
			return bad("named twice")
		case s.Owner != "" && !wire.Token(s.Owner):
			return bad("owner %q is no service name", s.Owner)
		case s.Kind != Compensatable && s.Kind != Pivot && s.Kind != Retriable:
			return bad("kind %q", s.Kind)
		case s.Undo != "" && s.Kind != Compensatable:
			return bad("a %s step has no compensation to name", s.Kind)
		case s.Timeout < 0:
			return bad("negative timeout")
		case i == 0 && s.Position != 0, i > 0 && s.Position != f.Steps[i-1].Position && s.Position != f.Steps[i-1].Position+1:
			return bad("position %d out of order", s.Position)
		}
		if s.InputFrom != "" && s.InputFrom != FromFlow {
			if p, ok := posOf[s.InputFrom]; !ok || p >= s.Position {
				return bad("input from %q, no step before it", s.InputFrom)
			}
		}
		seen[s.Name] = true
		posOf[s.Name] = s.Position
		if err := text("event type", s.EventType); err != nil {
			return bad("%v", err)
		}
		if s.Undo != "" {
			if err := text("compensation name", s.Undo); err != nil {
				return bad("%v", err)
			}
		}
	}
	if len(f.Attrs) > maxAttrs {
		return fmt.Errorf("flow %s: %d search attributes, at most %d", f.Name, len(f.Attrs), maxAttrs)
	}
	named := map[string]bool{}
	for _, a := range f.Attrs {
		switch {
		case !wire.Token(a.Name) || named[a.Name]:
			return fmt.Errorf("flow %s: search attribute %q: not a name, or named twice", f.Name, a.Name)
		case a.Kind != "string" && a.Kind != "number":
			return fmt.Errorf("flow %s: search attribute %s: kind %q", f.Name, a.Name, a.Kind)
		case a.Step != "" && !seen[a.Step]:
			return fmt.Errorf("flow %s: search attribute %s: from step %q, which it has not", f.Name, a.Name, a.Step)
		}
		named[a.Name] = true
	}
	return nil
}

// CheckRegistered is Check for a definition read from the registry under
// key: it must also be of the flow and version its key names. Schemas that
// are not JSON Schemas, or are of no type of the flow, are dropped.
func (f *Flow) CheckRegistered(key string) error {
	if key != wire.DefKey(f.Name, f.Version) {
		return fmt.Errorf("it describes flow %q v%d", f.Name, f.Version)
	}
	if err := f.Check(); err != nil {
		return err
	}
	types := map[string]bool{f.Input: true}
	for _, s := range f.Steps {
		types[s.EventType] = true
	}
	for t, raw := range f.Schemas {
		if !types[t] || !isSchema(raw) {
			delete(f.Schemas, t)
		}
	}
	return nil
}

// text checks a name a definition gives in words (an event type, a
// compensation's name): one line of printable text, not too long, with no
// control or formatting characters (escapes, bidirectional overrides).
func text(what, s string) error {
	if s == "" || len(s) > maxText || !utf8.ValidString(s) {
		return fmt.Errorf("%s: want 1 to %d bytes of UTF-8", what, maxText)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("%s %q: control or formatting character %U", what, s, r)
		}
	}
	return nil
}

// isSchema reports whether raw is a JSON Schema document: an object, or
// true or false.
func isSchema(raw []byte) bool {
	raw = bytes.TrimSpace(raw)
	if !json.Valid(raw) {
		return false
	}
	s := string(raw)
	return s == "true" || s == "false" || strings.HasPrefix(s, "{")
}
