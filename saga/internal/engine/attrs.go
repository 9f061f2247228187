package engine

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"sync/atomic"
	"unicode/utf8"

	"github.com/choreo-go/choreo/internal/wire"
)

// AttrKind is the type of a search attribute's values.
type AttrKind string

const (
	AttrString AttrKind = "string" // compared as text
	AttrNumber AttrKind = "number" // compared as numbers
)

// MaxAttrs is how many search attributes a flow version may declare.
const MaxAttrs = 8

// MaxAttrValue is the longest text value of a search attribute, in bytes:
// a longer one is cut there (at a character's start), and so is a value
// looked up.
const MaxAttrValue = 128

// AttrDef is a declared search attribute: a flow Item (Define checks it).
// Its value is computed from the saga's input, or from the result of one
// of its steps, by the process that has that value: the starter, or the
// step's owner.
type AttrDef struct {
	name string
	kind AttrKind
	in   reflect.Type // what of computes from: the flow's input or the step's result
	step *stepDef     // the step whose result it is computed from; nil: the input
	// of decodes the payload (JSON of type in) and computes the value:
	// text, or a number as strconv.FormatFloat(v, 'g', -1, 64).
	of func(data []byte) (string, error)
}

func (*AttrDef) flowItem() {}

// Attr declares a search attribute computed by of from the payload of
// type in: the flow's input (step nil) or step's result.
func Attr(name string, kind AttrKind, in reflect.Type, step *StepDef, of func(data []byte) (string, error)) *AttrDef {
	return &AttrDef{name: name, kind: kind, in: in, step: step, of: of}
}

// Name returns the attribute's name.
func (a *AttrDef) Name() string { return a.name }

// Kind returns the type of its values.
func (a *AttrDef) Kind() AttrKind { return a.kind }

// Source is the name of the step whose result the attribute is computed
// from, or "" for the saga's input.
func (a *AttrDef) Source() string {
	if a.step == nil {
		return ""
	}
	return a.step.name
}

// source is the index subject's source token of a.
func (a *AttrDef) source() string {
	if a.step == nil {
		return wire.SagaStep
	}
	return a.step.name
}

// value computes a's value from data and encodes it as an index token.
func (a *AttrDef) value(data []byte) (string, error) {
	v, err := a.of(data)
	if err != nil {
		return "", fmt.Errorf("search attribute %s: %w", a.name, err)
	}
	if a.kind == AttrNumber {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return "", fmt.Errorf("search attribute %s: %q is not a finite number", a.name, v)
		}
		return wire.IndexValueNumber(f), nil
	}
	return wire.IndexValueString(cutValue(v)), nil
}

// cutValue cuts v to MaxAttrValue bytes at a character's start.
func cutValue(v string) string {
	if len(v) <= MaxAttrValue {
		return v
	}
	n := MaxAttrValue
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return v[:n]
}

// attrsDeclared is set once a flow with search attributes is defined in
// the process: until then, recording a step's result looks for none.
var attrsDeclared atomic.Bool

// checkAttrs checks the flow's attributes as Define gives them: names are
// tokens, at most MaxAttrs, no two alike, each computed from the flow's
// input type or from the result type of one of its steps. It binds each
// to the step instance of f.
func (f *flowDef) checkAttrs(attrs []*AttrDef, instance map[*stepDef]*stepDef) error {
	if len(attrs) > MaxAttrs {
		return fmt.Errorf("%d search attributes: at most %d", len(attrs), MaxAttrs)
	}
	seen := map[string]bool{}
	for _, a := range attrs {
		switch {
		case a == nil:
			return fmt.Errorf("nil search attribute")
		case !wire.Token(a.name):
			return fmt.Errorf("search attribute name %q must be 1-64 characters of [A-Za-z0-9_-], starting with a letter or digit", a.name)
		case seen[a.name]:
			return fmt.Errorf("two search attributes named %q", a.name)
		case a.kind != AttrString && a.kind != AttrNumber:
			return fmt.Errorf("search attribute %q: unknown kind %q", a.name, a.kind)
		case a.of == nil:
			return fmt.Errorf("search attribute %q computes nothing (nil function)", a.name)
		}
		seen[a.name] = true
		b := *a
		if a.step == nil {
			if a.in != f.input {
				return fmt.Errorf("search attribute %q is computed from a %s but the flow's input is a %s", a.name, a.in, f.input)
			}
		} else {
			d := instance[a.step]
			if d == nil {
				return fmt.Errorf("search attribute %q is computed from step %q, which is not in the flow", a.name, a.step.name)
			}
			if a.in != d.out {
				return fmt.Errorf("search attribute %q is computed from a %s but step %q's result is a %s", a.name, a.in, d.name, d.out)
			}
			b.step = d
		}
		f.attrs = append(f.attrs, &b)
	}
	if len(f.attrs) > 0 {
		attrsDeclared.Store(true)
	}
	return nil
}

// Attrs returns the flow's search attributes, as declared.
func (f *flowDef) Attrs() []*AttrDef { return f.attrs }

// attr returns the flow's attribute named name, or nil.
func (f *flowDef) attr(name string) *AttrDef {
	if f == nil {
		return nil
	}
	for _, a := range f.attrs {
		if a.name == name {
			return a
		}
	}
	return nil
}

// attrsFrom returns the attributes computed from step's result ("" for
// the input).
func (f *flowDef) attrsFrom(step string) []*AttrDef {
	var out []*AttrDef
	for _, a := range f.attrs {
		if a.Source() == step {
			out = append(out, a)
		}
	}
	return out
}
