package saga_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
)

type Purchase struct {
	Customer string  `json:"customer"`
	Total    float64 `json:"total"`
	Country  string  `json:"country"`
}

type Receipt struct {
	Bank string `json:"bank"`
}

// searchFlow declares attributes of its input and of its charge step's
// result.
func searchFlow(t *testing.T, name string) (*saga.Flow[Purchase], *saga.Step[Purchase, Receipt]) {
	t.Helper()
	charge := saga.NewStep[Purchase, Receipt]("charge", saga.Owner("payments"))
	f, err := saga.Define[Purchase](name, 1, charge, saga.StartedBy("shop"),
		saga.Attr("customer", func(p Purchase) string { return p.Customer }),
		saga.NumberAttr("total", func(p Purchase) float64 { return p.Total }),
		saga.Attr("country", func(p Purchase) string { return p.Country }),
		saga.ResultAttr(charge, "bank", func(r Receipt) string { return r.Bank }))
	if err != nil {
		t.Fatal(err)
	}
	return f, charge
}

func ids(sts []*saga.State) []string {
	var out []string
	for _, st := range sts {
		out = append(out, st.ID)
	}
	slices.Sort(out)
	return out
}

func where(t *testing.T, conds ...string) saga.Filter {
	t.Helper()
	var f saga.Filter
	for _, s := range conds {
		c, err := saga.ParseCond(s)
		if err != nil {
			t.Fatal(err)
		}
		f.Where = append(f.Where, c)
	}
	return f
}

// Sagas are found by attributes of their input (written by the starter)
// and of a step's result (by the step's owner, once it completed): by
// equality, by range, and together with a status; Get shows them all.
func TestFindByAttributes(t *testing.T) {
	srv := sagatest.NewServer(t)
	c := srv.Client()
	f, charge := searchFlow(t, "purchase")
	r, _ := saga.NewRunner(c)
	_ = saga.Handle(r, charge, func(_ context.Context, p Purchase) (Receipt, error) {
		if p.Total > 1000 {
			return Receipt{}, saga.Abortf("over the limit")
		}
		return Receipt{Bank: "bank " + p.Country}, nil
	}, func(context.Context, Purchase, Receipt) error { return nil })
	sagatest.Run(t, r)
	ctx := context.Background()
	orders := map[string]Purchase{
		"o1": {"c-1", 50, "DE"}, "o2": {"c-1", 150.5, "FR"}, "o3": {"c-2", 99, "DE"},
		"o4": {"c.3 with spaces", 250, "DE"}, "o5": {"c-2", 5000, "FR"},
	}
	for id, p := range orders {
		if err := saga.Start(ctx, c, f, id, p); err != nil {
			t.Fatal(err)
		}
	}
	for id := range orders {
		want := saga.StatusCompleted
		if id == "o5" {
			want = saga.StatusCompensated
		}
		sagatest.AwaitStatus(t, c, f, id, 20*time.Second, want)
	}
	for _, tc := range []struct {
		conds []string
		want  []string
	}{
		{[]string{"customer=c-1"}, []string{"o1", "o2"}},
		{[]string{"customer=c.3 with spaces"}, []string{"o4"}},
		{[]string{"total>100"}, []string{"o2", "o4", "o5"}},
		{[]string{"total>=99", "total<=150.5"}, []string{"o2", "o3"}},
		{[]string{"customer=c-2", "total<1000"}, []string{"o3"}},
		{[]string{"country=DE", "total>60"}, []string{"o3", "o4"}},
		{[]string{"country!=DE"}, []string{"o2", "o5"}},
		{[]string{"bank=bank DE"}, []string{"o1", "o3", "o4"}},
		{[]string{"total=150.50"}, []string{"o2"}},
		{[]string{"customer=nobody"}, nil},
	} {
		got, err := c.Find(ctx, f, where(t, tc.conds...))
		if err != nil {
			t.Fatalf("%v: %v", tc.conds, err)
		}
		if !slices.Equal(ids(got), tc.want) {
			t.Errorf("%v: found %v, want %v", tc.conds, ids(got), tc.want)
		}
	}
	// With a status, and by name alone (as the command line asks).
	fl := where(t, "customer=c-2")
	fl.Statuses = []saga.Status{saga.StatusCompensated}
	got, err := c.Find(ctx, saga.Named("purchase"), fl)
	if err != nil || !slices.Equal(ids(got), []string{"o5"}) {
		t.Errorf("customer=c-2 compensated: %v %v, want [o5]", ids(got), err)
	}
	if len(got) == 1 && got[0].Attrs["customer"] != "c-2" {
		t.Errorf("found with attrs %v, want customer c-2", got[0].Attrs)
	}
	st, err := c.Get(ctx, f, "o2")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"customer": "c-1", "total": "150.5", "country": "FR", "bank": "bank FR"}
	if !maps(st.Attrs, want) {
		t.Errorf("Get shows attrs %v, want %v", st.Attrs, want)
	}
	// The operator's side finds the same, by the flow's name.
	found, err := srv.Ops().Find(ctx, "purchase", where(t, "total>100", "country=FR"))
	if err != nil || len(found) != 2 || found[0].Attrs["total"] == "" {
		t.Errorf("ops: total>100 country=FR: %+v %v, want o2 and o5 with their totals", found, err)
	}
	// A condition on no attribute of the flow is refused.
	if _, err := c.Find(ctx, f, where(t, "colour=red")); !errors.Is(err, saga.ErrInvalidOption) {
		t.Errorf("colour=red: %v, want ErrInvalidOption", err)
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Define checks the attributes: names, how many, duplicates, the type
// they are computed from, and the step they come from.
func TestAttrDefineChecks(t *testing.T) {
	step := saga.NewStep[Purchase, Receipt]("charge")
	other := saga.NewStep[Purchase, Receipt]("other")
	cust := func(p Purchase) string { return p.Customer }
	many := []saga.Item{step}
	for i := range saga.MaxAttrs + 1 {
		many = append(many, saga.Attr("a"+strings.Repeat("x", i), cust))
	}
	for name, items := range map[string][]saga.Item{
		"bad name":   {step, saga.Attr("no.dots", cust)},
		"duplicate":  {step, saga.Attr("c", cust), saga.Attr("c", cust)},
		"wrong type": {step, saga.Attr("c", func(r Receipt) string { return r.Bank })},
		"not a step": {step, saga.ResultAttr(other, "bank", func(r Receipt) string { return r.Bank })},
		"too many":   many,
		"nil func":   {step, saga.Attr[Purchase]("c", nil)},
	} {
		if _, err := saga.Define[Purchase]("checked", 1, items...); !errors.Is(err, saga.ErrInvalidFlow) {
			t.Errorf("%s: %v, want ErrInvalidFlow", name, err)
		}
	}
	// A start whose input gives no finite number is refused.
	srv := sagatest.NewServer(t)
	c := srv.Client()
	f, err := saga.Define[Purchase]("nan", 1, step, saga.NumberAttr("x", func(p Purchase) float64 { return p.Total / 0 * 0 }))
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Start(context.Background(), c, f, "s1", Purchase{}); !errors.Is(err, saga.ErrInvalidInput) {
		t.Errorf("start with a NaN attribute: %v, want ErrInvalidInput", err)
	}
	_ = access.IndexStream
}
