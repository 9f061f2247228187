package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
)

// Purchase is the input of the search section's flows.
type Purchase struct {
	Customer string  `json:"customer"`
	Total    float64 `json:"total"`
	Country  string  `json:"country"`
}

var countries = []string{"DE", "FR", "IT", "ES", "NL", "BE", "AT", "PL", "SE", "DK"}

// purchase is saga i's input: 1,000 customers (n/1,000 sagas each),
// totals spread over 0 to 199.99, ten countries.
func purchase(i int) Purchase {
	return Purchase{Customer: "c-" + strconv.Itoa(i%1000), Total: float64((i*7919)%20000) / 100, Country: countries[i%len(countries)]}
}

// searchRun starts n sagas of a flow with three search attributes (no
// runner: they stay running) and n of the same flow without, and
// measures what the attributes cost per saga (bytes in the index, start
// time) and how long lookups take, against List, which reads the newest
// event of every saga (what finding sagas without the index starts with).
func searchRun(n int) error {
	e, err := startEnv(false)
	if err != nil {
		return err
	}
	defer e.stop()
	ctx := context.Background()
	c, err := saga.New(ctx, e.js)
	if err != nil {
		return err
	}
	pay := saga.NewStep[Purchase, Purchase]("pay")
	plain, err := saga.Define[Purchase]("plain", 1, pay)
	if err != nil {
		return err
	}
	pay2 := saga.NewStep[Purchase, Purchase]("pay")
	indexed, err := saga.Define[Purchase]("indexed", 1, pay2,
		saga.Attr("customer", func(p Purchase) string { return p.Customer }),
		saga.NumberAttr("total", func(p Purchase) float64 { return p.Total }),
		saga.Attr("country", func(p Purchase) string { return p.Country }))
	if err != nil {
		return err
	}
	startAll := func(f *saga.Flow[Purchase]) (time.Duration, error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		t0 := time.Now()
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					if err := saga.Start(ctx, c, f, "s"+strconv.Itoa(i), purchase(i)); err != nil {
						select {
						case errs <- err:
						default:
						}
						return
					}
				}
			}()
		}
		wg.Wait()
		select {
		case err := <-errs:
			return 0, err
		default:
		}
		return time.Since(t0), nil
	}
	dPlain, err := startAll(plain)
	if err != nil {
		return fmt.Errorf("start plain: %w", err)
	}
	dIndexed, err := startAll(indexed)
	if err != nil {
		return fmt.Errorf("start indexed: %w", err)
	}
	fmt.Printf("start n=%d (64 at once): without attributes %.0f sagas/s, with three %.0f sagas/s\n", n, float64(n)/dPlain.Seconds(), float64(n)/dIndexed.Seconds())
	idx, err := e.js.Stream(ctx, access.IndexStream)
	if err != nil {
		return err
	}
	info, err := idx.Info(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("index: %d entries, %d bytes stored: %.0f bytes per saga (3 attributes, 2 entries each)\n", info.State.Msgs, info.State.Bytes, float64(info.State.Bytes)/float64(n))
	if info.State.Msgs != uint64(6*n) {
		return fmt.Errorf("index holds %d entries, want %d", info.State.Msgs, 6*n)
	}

	// median of k runs of fn, which must find want sagas.
	timed := func(label string, k, want int, fn func() ([]*saga.State, error)) error {
		var ds []time.Duration
		for range k {
			t0 := time.Now()
			got, err := fn()
			if err != nil {
				return fmt.Errorf("%s: %w", label, err)
			}
			ds = append(ds, time.Since(t0))
			if want >= 0 && len(got) != want {
				return fmt.Errorf("%s: found %d sagas, want %d", label, len(got), want)
			}
		}
		slices.Sort(ds)
		fmt.Printf("%-34s %8v (median of %d)\n", label, ds[len(ds)/2].Round(10*time.Microsecond), k)
		return nil
	}
	count := func(keep func(Purchase) bool) int {
		m := 0
		for i := range n {
			if keep(purchase(i)) {
				m++
			}
		}
		return m
	}
	find := func(conds ...string) func() ([]*saga.State, error) {
		return func() ([]*saga.State, error) {
			var fl saga.Filter
			for _, s := range conds {
				cond, err := saga.ParseCond(s)
				if err != nil {
					return nil, err
				}
				fl.Where = append(fl.Where, cond)
			}
			return c.Find(ctx, indexed, fl)
		}
	}
	for _, l := range []struct {
		label string
		k     int
		want  int
		fn    func() ([]*saga.State, error)
	}{
		{"find customer=c-42", 21, count(func(p Purchase) bool { return p.Customer == "c-42" }), find("customer=c-42")},
		{"find country=DE", 3, count(func(p Purchase) bool { return p.Country == "DE" }), find("country=DE")},
		{"find customer=c-42 country=DE", 21, count(func(p Purchase) bool { return p.Customer == "c-42" && p.Country == "DE" }), find("customer=c-42", "country=DE")},
		{"find total>199", 5, count(func(p Purchase) bool { return p.Total > 199 }), find("total>199")},
		{"find total>100", 3, count(func(p Purchase) bool { return p.Total > 100 }), find("total>100")},
		{"get (with its attributes)", 21, -1, func() ([]*saga.State, error) {
			st, err := c.Get(ctx, indexed, "s42")
			return []*saga.State{st}, err
		}},
		{"get (no attributes)", 21, -1, func() ([]*saga.State, error) {
			st, err := c.Get(ctx, plain, "s42")
			return []*saga.State{st}, err
		}},
		{"list (every saga, no index)", 3, n, func() ([]*saga.State, error) { return c.List(ctx, plain) }},
	} {
		if err := timed(l.label, l.k, l.want, l.fn); err != nil {
			return err
		}
	}
	return nil
}
