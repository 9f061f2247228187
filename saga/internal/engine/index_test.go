package engine

import (
	"math"
	"strings"
	"testing"

	"github.com/choreo-go/choreo/internal/wire"
)

// A value goes into one subject token and reads back as it was: text
// (plain when it can, base64 otherwise), numbers in their shortest form.
func TestIndexValuesReadBack(t *testing.T) {
	for _, tc := range []struct {
		tok, want string
		number    bool
	}{
		{wire.IndexValueString("c-123"), "c-123", false},
		{wire.IndexValueString("DE"), "DE", false},
		{wire.IndexValueString(""), "", false},
		{wire.IndexValueString("ada.lovelace@example.com"), "ada.lovelace@example.com", false},
		{wire.IndexValueString("a b*>c_d"), "a b*>c_d", false},
		{wire.IndexValueString("Zürich"), "Zürich", false},
		{wire.IndexValueNumber(100), "100", true},
		{wire.IndexValueNumber(150.5), "150.5", true},
		{wire.IndexValueNumber(-2.25), "-2.25", true},
		{wire.IndexValueNumber(1e21), "1e+21", true},
		{wire.IndexValueNumber(1e-7), "1e-07", true},
		{wire.IndexValueNumber(math.MaxFloat64), "1.7976931348623157e+308", true},
	} {
		if !wire.IDChars(tc.tok) {
			t.Errorf("%q is not one subject token", tc.tok)
		}
		v, number, ok := wire.ParseIndexValue(tc.tok)
		if !ok || v != tc.want || number != tc.number {
			t.Errorf("%q reads %q %v %v, want %q %v", tc.tok, v, number, ok, tc.want, tc.number)
		}
		e := indexEntry{value: v, number: number}
		if e.token() != tc.tok {
			t.Errorf("%q encodes again as %q", v, e.token())
		}
	}
	for _, bad := range []string{"", "x1", "nabc", "b!!", "s"} {
		if _, _, ok := wire.ParseIndexValue(bad); ok {
			t.Errorf("%q reads as a value", bad)
		}
	}
	if got := cutValue(strings.Repeat("é", 100)); len(got) > MaxAttrValue || !strings.HasPrefix(strings.Repeat("é", 100), got) || len(got)%2 != 0 {
		t.Errorf("cut to %d bytes: %q", len(got), got)
	}
}

// Both kinds of index subject read back; anything else is refused.
func TestParseIndexSubject(t *testing.T) {
	tok := wire.IndexValueString("c-1")
	e, bySaga, ok := parseIndexSubject("order", wire.IndexSubject("order", "customer", tok, "o1", wire.SagaStep))
	if !ok || bySaga || e.attr != "customer" || e.value != "c-1" || e.id != "o1" || e.source != wire.SagaStep {
		t.Errorf("by value: %+v %v %v", e, bySaga, ok)
	}
	e, bySaga, ok = parseIndexSubject("order", wire.IndexSagaSubject("order", "o1", "total", wire.IndexValueNumber(3), "charge"))
	if !ok || !bySaga || e.attr != "total" || e.value != "3" || !e.number || e.id != "o1" || e.source != "charge" {
		t.Errorf("by saga: %+v %v %v", e, bySaga, ok)
	}
	for _, s := range []string{
		"choreo.idx.other.customer.sc-1.o1._saga",
		"choreo.idx.order.customer.sc-1.o1",
		"choreo.idx.order._bad.sc-1.o1._saga",
		"choreo.idx.order.customer.q!.o1._saga",
		"choreo.idx.order._id.o1.customer.sc-1",
	} {
		if _, _, ok := parseIndexSubject("order", s); ok {
			t.Errorf("%s reads as an index subject", s)
		}
	}
}
