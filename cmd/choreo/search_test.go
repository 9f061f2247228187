package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
)

type Basket struct {
	Customer string
	Total    float64
	Country  string
}

// sagas ls --where finds sagas by their search attributes (every
// condition must hold), and sagas show prints them; a bad condition is
// one line and exit status 2.
func TestSagasWhere(t *testing.T) {
	srv := sagatest.NewServer(t)
	c := srv.Client()
	pack := saga.NewStep[Basket, Basket]("pack", saga.Owner("warehouse"))
	f := saga.MustDefine[Basket]("basket", 1, pack, saga.StartedBy("web"),
		saga.Attr("customer", func(b Basket) string { return b.Customer }),
		saga.NumberAttr("total", func(b Basket) float64 { return b.Total }),
		saga.Attr("country", func(b Basket) string { return b.Country }))
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, pack, func(_ context.Context, b Basket) (Basket, error) { return b, nil }, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	ctx := context.Background()
	for _, b := range []struct {
		id string
		b  Basket
	}{{"b1", Basket{"c-123", 50, "DE"}}, {"b2", Basket{"c-123", 120, "FR"}}, {"b3", Basket{"c-7", 300, "DE"}}, {"b4", Basket{"c-123", 101, "DE"}}} {
		if err := saga.Start(ctx, c, f, b.id, b.b); err != nil {
			t.Fatal(err)
		}
		sagatest.AwaitStatus(t, c, f, b.id, 20*time.Second, saga.StatusCompleted)
	}
	url := srv.ClientURL()
	code, out, errs := runCLI(t, url, "sagas", "ls", "--flow", "basket", "--where", "customer=c-123", "--where", "total>100")
	if code != 0 {
		t.Fatalf("sagas ls --where: %d %s", code, errs)
	}
	golden(t, "sagas-ls-where.golden", out)
	// Without --flow: the registered flows that have the attributes.
	code, out, errs = runCLI(t, url, "sagas", "ls", "--where", "country=DE", "--status", "completed")
	if code != 0 || !strings.Contains(out, "b1") || !strings.Contains(out, "b3") || !strings.Contains(out, "b4") || strings.Contains(out, "b2") {
		t.Errorf("sagas ls --where country=DE: %d %s %s", code, out, errs)
	}
	code, out, errs = runCLI(t, url, "sagas", "show", "basket", "b2")
	if code != 0 {
		t.Fatalf("sagas show: %d %s", code, errs)
	}
	golden(t, "sagas-show-attrs.golden", out)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sagas", "ls", "--flow", "basket", "--where", "total"}, `condition "total" has no operator`},
		{[]string{"sagas", "ls", "--flow", "basket", "--where", "=5"}, `names no attribute`},
		{[]string{"sagas", "ls", "--flow", "basket", "--where", "colour=red"}, `no search attribute "colour"`},
		{[]string{"sagas", "ls", "--where", "colour=red"}, `no registered flow has the search attributes [colour]`},
	} {
		code, out, errs := runCLI(t, url, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 || out != "" {
			t.Errorf("%v: exit %d, stderr %q, want 2 and one line with %q", tc.args, code, errs, tc.want)
		}
	}
}
