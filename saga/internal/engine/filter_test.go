package engine

import (
	"testing"
	"time"
)

func TestFilter(t *testing.T) {
	for _, bad := range []string{"", "total", "=5", ">x"} {
		if _, err := ParseCond(bad); err == nil {
			t.Errorf("ParseCond(%q) took it", bad)
		}
	}
	st := &State{Flow: "order", Version: 2, Status: StatusRunning, StartedAt: time.Unix(100, 0),
		Steps: []StepState{{Name: "charge", Status: StepWaiting}, {Name: "ship", Status: StepPending}}}
	attrs := map[string]string{"customer": "c-123", "total": "150.5", "country": "DE"}
	attr := func(n string) (string, bool) { v, ok := attrs[n]; return v, ok }
	cases := []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{Flow: "order", Version: 2}, true},
		{Filter{Version: 1}, false},
		{Filter{Statuses: []Status{StatusCompleted}}, false},
		{Filter{Step: "charge"}, true},
		{Filter{Step: "ship"}, false},
		{Filter{Step: "nope"}, false},
		{Filter{Since: time.Unix(101, 0)}, false},
		{Filter{Before: time.Unix(101, 0)}, true},
		{Filter{Where: conds(t, "customer=c-123", "total>100")}, true},
		{Filter{Where: conds(t, "total>=150.5", "total<151", "country!=FR")}, true},
		{Filter{Where: conds(t, "total>1000")}, false},
		{Filter{Where: conds(t, "total>99")}, true}, // numeric, not "150.5" < "99" as text
		{Filter{Where: conds(t, "missing!=x")}, true},
		{Filter{Where: conds(t, "missing=x")}, false},
	}
	for _, c := range cases {
		if got := c.f.Matches(st, attr); got != c.want {
			t.Errorf("%+v: got %v, want %v", c.f, got, c.want)
		}
	}
}

func conds(t *testing.T, ss ...string) []Cond {
	var out []Cond
	for _, s := range ss {
		c, err := ParseCond(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}
