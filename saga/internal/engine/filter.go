package engine

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Filter selects sagas: what an operator's search, a bulk act and List
// share. A zero field does not filter.
type Filter struct {
	Flow     string   `json:"flow,omitempty"`
	Version  int      `json:"version,omitempty"`
	Statuses []Status `json:"statuses,omitempty"`
	// Step keeps the sagas with this step under way: running, waiting,
	// or (while the saga compensates) compensating or parked.
	Step string `json:"step,omitempty"`
	// Since and Before bound when a saga started.
	Since  time.Time `json:"since,omitzero"`
	Before time.Time `json:"before,omitzero"`
	// Where are conditions on the flow's search attributes, all of which
	// must hold.
	Where []Cond `json:"where,omitempty"`
}

// Cond is one condition on a search attribute: Attr Op Value.
type Cond struct {
	Attr  string `json:"attr"`
	Op    string `json:"op"` // one of = != > >= < <=
	Value string `json:"value"`
}

// String is the condition as ParseCond reads it.
func (c Cond) String() string { return c.Attr + c.Op + c.Value }

// condOps are the operators ParseCond knows, longest first so that ">="
// is not read as ">" followed by "=...".
var condOps = []string{">=", "<=", "!=", "=", ">", "<"}

// ParseCond reads "customer=c-123", "total>100", "country!=DE".
func ParseCond(s string) (Cond, error) {
	for i := 0; i < len(s); i++ {
		for _, op := range condOps {
			if strings.HasPrefix(s[i:], op) {
				c := Cond{Attr: strings.TrimSpace(s[:i]), Op: op, Value: strings.TrimSpace(s[i+len(op):])}
				if c.Attr == "" {
					return Cond{}, fmt.Errorf("%w: condition %q names no attribute", ErrInvalidOption, s)
				}
				return c, nil
			}
		}
	}
	return Cond{}, fmt.Errorf("%w: condition %q has no operator (one of = != > >= < <=)", ErrInvalidOption, s)
}

// holds reports whether value v (as a saga's attribute reads) satisfies
// c: numerically when both sides read as numbers, else as text.
func (c Cond) holds(v string, present bool) bool {
	if !present {
		return c.Op == "!="
	}
	var cmp int
	a, errA := strconv.ParseFloat(v, 64)
	b, errB := strconv.ParseFloat(c.Value, 64)
	if errA == nil && errB == nil {
		switch {
		case a < b:
			cmp = -1
		case a > b:
			cmp = 1
		}
	} else {
		cmp = strings.Compare(v, c.Value)
	}
	switch c.Op {
	case "=":
		return cmp == 0
	case "!=":
		return cmp != 0
	case ">":
		return cmp > 0
	case ">=":
		return cmp >= 0
	case "<":
		return cmp < 0
	case "<=":
		return cmp <= 0
	}
	return false
}

// Matches reports whether st is selected by f, reading its attributes
// with attr (nil: the saga has none).
func (f Filter) Matches(st *State, attr func(name string) (string, bool)) bool {
	if f.Flow != "" && st.Flow != f.Flow {
		return false
	}
	if f.Version != 0 && st.Version != f.Version {
		return false
	}
	if len(f.Statuses) > 0 && !slices.Contains(f.Statuses, st.Status) {
		return false
	}
	if !f.Since.IsZero() && st.StartedAt.Before(f.Since) {
		return false
	}
	if !f.Before.IsZero() && !st.StartedAt.Before(f.Before) {
		return false
	}
	if f.Step != "" {
		s := st.Step(f.Step)
		if s == nil {
			return false
		}
		switch s.Status {
		case StepRunning, StepWaiting, StepCompensating, StepCompensationFailed, StepUnknown:
		default:
			return false
		}
	}
	for _, c := range f.Where {
		v, ok := "", false
		if attr != nil {
			v, ok = attr(c.Attr)
		}
		if !c.holds(v, ok) {
			return false
		}
	}
	return true
}
