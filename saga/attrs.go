package saga

import (
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"time"

	"github.com/choreo-go/choreo/saga/internal/engine"
)

// Search attributes: what a flow's sagas are found by (the customer, the
// total, the country of an order). A flow declares a few, each computed
// from its input (Attr, NumberAttr) by the process that starts the saga,
// or from a step's result (ResultAttr, ResultNumberAttr) by the step's
// owner. Client.Find, the command line (choreo sagas ls --where) and the
// console select sagas by them without reading every saga's log.
//
// An attribute is stored in the clear in the search index (a stream of
// its own, one subject per attribute of a saga, the value in the
// subject), whatever else encrypts payloads: declare no secret as an
// attribute. It is written before the event it comes from (the saga's
// start, the step's result), deleted with the saga when its retention
// ends, and only the identity that computes it may write it
// (access.Permissions). A text value is cut to MaxAttrValue bytes.

// MaxAttrs is how many search attributes a flow version may declare.
const MaxAttrs = engine.MaxAttrs

// MaxAttrValue is the longest text value of a search attribute, in bytes:
// a longer one is cut there (at a character's start), and so is a value
// looked up.
const MaxAttrValue = engine.MaxAttrValue

// Attr declares a text search attribute of a flow whose sagas start with
// an In, computed by of from the saga's input when it starts. Put it among
// the flow's items (Define). The name must be 1 to 64 characters of
// [A-Za-z0-9_-]; Define refuses a bad name, more than MaxAttrs attributes,
// two of one name, or an In that is not the flow's input type.
func Attr[In any](name string, of func(In) string) Item {
	return item{engine.Attr(name, engine.AttrString, reflect.TypeFor[In](), nil, textOf(of))}
}

// NumberAttr declares a numeric search attribute computed by of from the
// saga's input (as Attr): conditions on it compare numbers (total>100). A
// value that is not finite (NaN, an infinity) refuses the start with
// ErrInvalidInput.
func NumberAttr[In any](name string, of func(In) float64) Item {
	return item{engine.Attr(name, engine.AttrNumber, reflect.TypeFor[In](), nil, numberOf(of))}
}

// ResultAttr declares a text search attribute computed by of from step
// s's result, by s's owner when s completes (before its result is
// recorded). Define refuses it when s is not a step of the flow. A saga
// has it once s has completed.
func ResultAttr[In, Out any](s *Step[In, Out], name string, of func(Out) string) Item {
	return item{engine.Attr(name, engine.AttrString, reflect.TypeFor[Out](), s.step(), textOf(of))}
}

// ResultNumberAttr is ResultAttr for a numeric attribute. A result that
// gives no finite number leaves the attribute out (and is logged).
func ResultNumberAttr[In, Out any](s *Step[In, Out], name string, of func(Out) float64) Item {
	return item{engine.Attr(name, engine.AttrNumber, reflect.TypeFor[Out](), s.step(), numberOf(of))}
}

func textOf[T any](of func(T) string) func([]byte) (string, error) {
	if of == nil {
		return nil
	}
	return func(data []byte) (string, error) {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return "", err
		}
		return of(v), nil
	}
}

func numberOf[T any](of func(T) float64) func([]byte) (string, error) {
	if of == nil {
		return nil
	}
	return func(data []byte) (string, error) {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return "", err
		}
		return strconv.FormatFloat(of(v), 'g', -1, 64), nil
	}
}

// Cond is one condition on a search attribute: Attr Op Value, with Op one
// of = != > >= < <=. A numeric attribute compares as numbers, a text one
// as text; a saga without the attribute meets only "!=".
type Cond = engine.Cond

// ParseCond reads a condition as typed at a prompt: "customer=c-123",
// "total>100", "country!=DE". It returns an error wrapping
// ErrInvalidOption when s names no attribute or has no operator.
func ParseCond(s string) (Cond, error) { return engine.ParseCond(s) }

// Filter selects sagas of a flow for Client.Find. A zero field does not
// filter; every field that is set must hold.
type Filter struct {
	Version  int      // the flow version the sagas run on
	Statuses []Status // one of these statuses
	// Step keeps the sagas with this step under way: running, waiting,
	// or (while the saga compensates) compensating or parked.
	Step string
	// Since and Before bound when a saga started.
	Since, Before time.Time
	// Where are conditions on the flow's search attributes (ParseCond).
	Where []Cond
}

// Find returns the sagas of flow f that filter selects, oldest first.
// With conditions on search attributes, the search index gives the
// candidates (an equality reads the index entries of its value only,
// another condition the names of its attribute's entries, no message) and
// only those sagas are read; with none, or only "!=" ones, Find reads
// the newest events of every saga of the flow, as List does. Each saga
// found has Attrs set to the values its conditions read (Get shows them
// all). It returns an error wrapping ErrInvalidFlow for a nil flow,
// ErrInvalidOption for a condition on an attribute no known version of
// the flow declares, and ErrNotProvisioned when the index stream does not
// exist.
func (c *Client) Find(ctx context.Context, f FlowRef, filter Filter) ([]*State, error) {
	ef := engine.Filter{Version: filter.Version, Step: filter.Step, Since: filter.Since, Before: filter.Before, Where: filter.Where}
	for _, s := range filter.Statuses {
		ef.Statuses = append(ef.Statuses, engine.Status(s))
	}
	sts, err := c.e.Find(ctx, ref(f), ef)
	return statesOf(sts), err
}
