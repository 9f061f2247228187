package faults_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
)

// Scenario 17: a rolling upgrade of the order flow under load. Two
// instances of every service start as the old build (order flow version 1
// only). Shipping stops; every other instance is restarted, one at a time
// (SIGTERM), as the build that serves versions 1 and 2, so both versions
// are in flight at once (a version 2 saga may reach a service still on
// version 1, where it waits); version 1 is drained (Retire: new orders
// start on version 2) while some of its sagas wait for shipping, which
// then comes back on the new build; once no version 1 saga is left, each
// instance is restarted as the newest build (version 2 only). Nothing may
// be lost, doubled or stuck, every saga ends on the version it started
// with, and both versions must have carried orders.
func TestRollingUpgradeOfTheFlow(t *testing.T) {
	var mu sync.Mutex
	versions := "1"
	h := newHarness(t, setup{
		instances: map[string]int{"order": 2, "payment": 2, "inventory": 2, "billing": 2, "shipping": 2, "notification": 2},
		env: func(h *harness, svc string, n int) []string {
			mu.Lock()
			defer mu.Unlock()
			return []string{kit.OrderVersionsEnv + "=" + versions}
		},
	})
	ctx := context.Background()
	setVersions := func(to string) {
		mu.Lock()
		versions = to
		mu.Unlock()
	}
	restart := func(in *instance) {
		if err := in.stop(); err != nil {
			t.Errorf("%s[%d] after SIGTERM: %v\n%s", in.svc, in.idx, err, tail(in.proc().output(), 2000))
		}
		in.start()
		h.faults.Add(1)
	}
	roll := func(to string, skip string) {
		setVersions(to)
		for _, svc := range participants {
			for _, in := range h.insts[svc] {
				if svc != skip {
					restart(in)
				}
			}
		}
	}
	count := func() map[int]int {
		list, err := h.d.Sagas.List(ctx, schemas.OrderFlow)
		if err != nil {
			return nil
		}
		out := map[int]int{}
		for _, st := range list {
			out[st.Version]++
		}
		return out
	}

	// Orders for about a minute and a half: every phase runs under load.
	began := time.Now()
	l := h.startLoad(scale(900), 10)
	sagatest.Poll(t, 2*time.Minute, func() bool { return count()[1] >= 40 }, func() string { return fmt.Sprint("sagas by version: ", count()) })
	t.Logf("%v old build: sagas by version %v", time.Since(began).Round(time.Second), count())

	// Shipping goes down (as for its own upgrade) while everything else
	// moves to the build that serves both versions: version 1 sagas wait
	// at its step, and version 2 sagas start and wait there too.
	for _, in := range h.insts["shipping"] {
		if err := in.stop(); err != nil {
			t.Errorf("shipping[%d] after SIGTERM: %v", in.idx, err)
		}
	}
	roll("1,2", "shipping")
	sagatest.Poll(t, 2*time.Minute, func() bool { return count()[2] >= 20 }, func() string { return fmt.Sprint("no version 2 sagas: ", count()) })
	t.Logf("%v both versions in flight: sagas by version %v", time.Since(began).Round(time.Second), count())

	// Version 1 drains while some of its sagas wait for shipping.
	rep, err := h.d.Ops.Retire(ctx, schemas.OrderFlow.Name(), 1, ops.Drain, "order flow v2 invoices confirmed orders only")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("version 1 draining: %d of its sagas in flight", rep.Left())
	if rep.Left() == 0 {
		t.Errorf("no version 1 saga was in flight at the drain: the scenario proves little")
	}
	if !l.running() {
		t.Errorf("the load ended before the drain: the upgrade ran without orders")
	}
	for _, in := range h.insts["shipping"] {
		in.start()
		h.faults.Add(1)
	}
	var left []string
	sagatest.Poll(t, 3*time.Minute, func() bool {
		vs, err := h.d.Ops.Versions(ctx, schemas.OrderFlow.Name())
		if err != nil {
			return false
		}
		for _, v := range vs {
			if v.Version == 1 {
				left = v.InFlight
				return v.Left() == 0 && v.Status == ops.VersionDrained && !v.Drained.IsZero()
			}
		}
		return false
	}, func() string { return fmt.Sprintf("version 1 still has sagas in flight: %v", left) })
	atDrain := count()
	t.Logf("%v version 1 drained: sagas by version %v", time.Since(began).Round(time.Second), atDrain)

	roll("2", "")
	t.Logf("%v new build everywhere", time.Since(began).Round(time.Second))
	if !l.running() {
		t.Errorf("the load ended before the new build took over")
	}
	waitLoad(l)
	rep2 := h.settle(l, 3*time.Minute)
	final := count()
	t.Logf("rolling upgrade: sagas by version %v (v1 %d, v2 %d)", final, final[1], final[2])
	if final[1] != atDrain[1] {
		t.Errorf("version 1 sagas started after the drain: %d at the drain, %d at the end", atDrain[1], final[1])
	}
	if final[1] == 0 || final[2] == 0 || rep2.Sagas == 0 {
		t.Errorf("both versions must carry orders: %v", final)
	}
	// Every saga ended on its version's steps: version 1 never bills,
	// version 2 never invoices in the parallel group.
	list, err := h.d.Sagas.List(ctx, schemas.OrderFlow)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range list {
		if (st.Version == 1 && st.Step("bill") != nil) || (st.Version == 2 && st.Step("invoice") != nil) {
			t.Errorf("saga %s of version %d has the steps %+v", st.ID, st.Version, st.Steps)
		}
	}
}
