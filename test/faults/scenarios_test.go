package faults_test

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/shipping"
)

// Scenario 1: kill -9 a participant at each crash point. Every participant
// dies the n-th time it reaches the point for its step (n drawn from the
// seed, again at each restart), and for the compensations too; its
// supervisor restarts it.
//
// A restarted process is handed its whole backlog at once (up to the
// runner's concurrency, 128 per step), so it dies again at a point in the
// first 3-27 calls before any of them is recorded, and again: a crash loop
// that no code can make progress through (the soak found it: 72
// compensations redelivered every 2s for minutes). So each restart of a
// process lives 25 calls longer than the one before: crashes stay
// frequent, and one incarnation outlives its backlog.
func TestCrashAtEachPoint(t *testing.T) {
	steps := map[string][]string{
		"payment":   {"charge", "charge.undo"},
		"inventory": {"reserve", "reserve.undo"},
		"billing":   {"invoice", "invoice.undo"},
		"shipping":  {"book", "book.undo", "deliver"}, // book: version 3's step (schedule in 1 and 2); deliver: version 4's
		"order":     {"confirm"},
	}
	for _, point := range []string{"start", "effect", "ack"} {
		t.Run(point, func(t *testing.T) {
			h := newHarness(t, setup{supervise: true, env: func(h *harness, svc string, n int) []string {
				var specs []string
				for _, step := range steps[svc] {
					at := 3 + h.intn(25) + 25*(n-1)
					specs = append(specs, fmt.Sprintf("%s:%s:%d", point, step, at))
				}
				if len(specs) == 0 {
					return nil
				}
				return []string{"CHOREO_CRASH=" + strings.Join(specs, ",")}
			}})
			l := h.startLoad(scale(150), 40)
			h.settle(l, 2*time.Minute)
			if h.crashes.Load() < 5 {
				t.Errorf("only %d crashes at %s: the scenario proves little", h.crashes.Load(), point)
			}
		})
	}
}

// Scenario 8: several instances of each service, some killed (kill -9)
// under load and started again.
func TestInstancesKilledUnderLoad(t *testing.T) {
	h := newHarness(t, setup{instances: map[string]int{"order": 2, "payment": 3, "inventory": 3, "billing": 2, "shipping": 3, "carrier": 2, "notification": 2}})
	l := h.startLoad(scale(400), 50)
	stop := make(chan struct{})
	killable := []string{"order", "payment", "inventory", "billing", "shipping", "carrier", "notification"}
	wg := h.every(400*time.Millisecond, stop, func() {
		svc := killable[h.intn(len(killable))]
		ins := h.insts[svc]
		in := ins[h.intn(len(ins))]
		in.hold()
		h.faults.Add(1)
		go func() {
			time.Sleep(time.Duration(200+h.intn(800)) * time.Millisecond) // how long it stays dead
			in.start()
		}()
	})
	for l.running() {
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for _, ins := range h.insts {
		for _, in := range ins {
			if in.proc().exited() {
				in.start()
			}
		}
	}
	h.settle(l, 2*time.Minute)
}

// waitLoad waits for the load driver to finish placing orders.
func waitLoad(l *load) {
	for l.running() {
		time.Sleep(100 * time.Millisecond) // the load driver's own pace
	}
}

// Scenario 2: kill -9 the broker (file storage, fsync always) under load
// and start it again on the same store.
func TestBrokerKilledUnderLoad(t *testing.T) {
	h := newHarness(t, setup{supervise: true})
	l := h.startLoad(scale(200), 40)
	stop := make(chan struct{})
	wg := h.every(3*time.Second, stop, func() {
		h.broker.kill()
		h.faults.Add(1)
		time.Sleep(time.Duration(200+h.intn(800)) * time.Millisecond) // the outage
		h.broker.start()
	})
	waitLoad(l)
	close(stop)
	wg.Wait()
	h.settle(l, 2*time.Minute)
}

// Scenario 9: graceful shutdown (SIGTERM) and a rolling restart of every
// instance under load: each drains and exits 0, and nothing is lost.
func TestRollingRestartUnderLoad(t *testing.T) {
	h := newHarness(t, setup{instances: map[string]int{"order": 2, "payment": 2, "inventory": 2, "billing": 2, "shipping": 2, "carrier": 2, "notification": 2}})
	l := h.startLoad(scale(300), 40)
	restarts := 0
	for round := 0; l.running(); round++ {
		for _, svc := range participants {
			for _, in := range h.insts[svc] {
				if err := in.stop(); err != nil {
					t.Errorf("%s[%d] after SIGTERM: %v\n%s", svc, in.idx, err, tail(in.proc().output(), 2000))
				}
				in.start()
				restarts++
				h.faults.Add(1)
			}
		}
	}
	t.Logf("%d graceful restarts", restarts)
	h.settle(l, 2*time.Minute)
}

// Scenario 7: every instance of a service down for longer than the
// broker's inactivity threshold for consumers (5s for ephemeral ones):
// choreo's consumers are durable, so they, and the work they hold, wait.
// (Orders start on the order flow's newest version: kit.OrderFlow.)
func TestServiceDownLongerThanInactivityThreshold(t *testing.T) {
	newest, err := kit.OrderFlow()
	if err != nil {
		t.Fatal(err)
	}
	reserveDo := fmt.Sprintf("order_v%d_reserve_do", newest.Version())
	h := newHarness(t, setup{instances: map[string]int{"inventory": 2}})
	// inventory has made its durable consumer before it goes down.
	sagatest.Poll(t, time.Minute, func() bool {
		_, err := h.d.JS.Consumer(context.Background(), "CHOREO", reserveDo)
		return err == nil
	}, func() string { return "inventory did not create its consumer" })
	for _, in := range h.insts["inventory"] {
		in.hold()
	}
	h.faults.Add(1)
	downAt := time.Now()
	l := h.startLoad(scale(100), 40)
	waitLoad(l)
	for time.Since(downAt) < 8*time.Second {
		time.Sleep(100 * time.Millisecond) // the outage lasts 8s
	}
	ctx := context.Background()
	info, err := h.d.JS.Consumer(ctx, "CHOREO", reserveDo)
	if err != nil {
		t.Fatalf("the reserve consumer is gone after 8s without a client: %v", err)
	}
	if ci := info.CachedInfo(); ci.NumPending == 0 && ci.NumAckPending == 0 {
		t.Errorf("no reserve work waits while inventory is down: %+v", ci)
	}
	for _, in := range h.insts["inventory"] {
		in.start()
	}
	h.settle(l, 2*time.Minute) // fails the test on a lost saga
}

// Scenario 5: a compensation failing transiently (then succeeding), and
// failing for good: compensation_failed, visible, until an operator's
// retry (after the fix is deployed) finishes it.
func TestCompensationFailures(t *testing.T) {
	t.Run("transient", func(t *testing.T) {
		h := newHarness(t, setup{env: func(h *harness, svc string, n int) []string {
			if svc == "payment" {
				return []string{"CHOREO_FAIL_UNDO=charge:2"}
			}
			return nil
		}})
		l := h.startLoad(scale(60), 30)
		h.settle(l, 2*time.Minute)
		retried := 0
		for _, id := range l.ids() {
			st, err := h.d.Sagas.Get(context.Background(), schemas.OrderFlow, id)
			if err == nil && st.Step("charge").Status == saga.StepCompensated {
				if st.Step("charge").CompensationAttempts != 3 {
					t.Errorf("%s: refund took %d attempts, want 3", id, st.Step("charge").CompensationAttempts)
				}
				retried++
			}
		}
		if retried == 0 {
			t.Error("no refund was retried")
		}
	})
	t.Run("permanent, then an operator retries", func(t *testing.T) {
		h := newHarness(t, setup{env: func(h *harness, svc string, n int) []string {
			env := []string{"CHOREO_REFUND_ATTEMPTS=3"}
			if svc == "payment" && n == 1 {
				env = append(env, "CHOREO_FAIL_UNDO=charge:-1")
			}
			return env
		}})
		l := h.startLoad(scale(40), 30)
		waitLoad(l)
		ctx := context.Background()
		flow := schemas.OrderFlow
		var parked []*saga.State
		sagatest.Poll(t, 2*time.Minute, func() bool {
			parked = nil
			for _, id := range l.ids() {
				st, err := h.d.Sagas.Get(ctx, flow, id)
				if err != nil || !st.Status.Terminal() {
					return false
				}
				if st.Status == saga.StatusCompensationFailed {
					parked = append(parked, st)
				}
			}
			return true
		}, func() string { return "sagas still running" })
		if len(parked) == 0 {
			t.Fatal("no saga parked as compensation_failed")
		}
		for _, st := range parked {
			if c := st.Step("charge"); c.Status != saga.StepCompensationFailed || !strings.Contains(c.CompensationError, "injected compensation failure") {
				t.Errorf("%s: charge %+v", st.ID, c)
			}
		}
		list, err := h.d.Sagas.List(ctx, flow, saga.StatusCompensationFailed)
		if err != nil || len(list) != len(parked) {
			t.Errorf("List(compensation_failed): %d sagas, %v; want %d", len(list), err, len(parked))
		}
		// The fix is deployed: payment restarts without the fault, and the
		// operator retries each parked saga.
		for _, in := range h.insts["payment"] {
			in.hold()
			in.start()
		}
		for _, st := range parked {
			if err := h.d.Ops.RetryCompensation(ctx, flow.Name(), st.ID); err != nil {
				t.Errorf("retry %s: %v", st.ID, err)
			}
		}
		h.settle(l, 2*time.Minute)
		t.Logf("%d sagas parked, then compensated after the operator's retry", len(parked))
	})
}

// Scenario 11: the saga deadline fires while the starter (the order
// service) is dead, and the slow step's result arrives after the saga was
// compensated: it is recorded and undone.
func TestDeadlineWhileStarterDeadAndLateResults(t *testing.T) {
	h := newHarness(t, setup{env: func(h *harness, svc string, n int) []string {
		// Version 4's deadline is the order deadline plus the
		// customer's confirmation time (2m by default): 3s + 1s.
		env := []string{"CHOREO_ORDER_DEADLINE=3s", schemas.ConfirmTimeoutEnv + "=1s"}
		if svc == "shipping" {
			env = append(env, "CHOREO_SLOW=book:6s")
		}
		return env
	}})
	l := h.startLoad(scale(20), 20)
	waitLoad(l)
	for _, in := range h.insts["order"] {
		in.hold() // the starter is gone before any deadline
	}
	h.faults.Add(1)
	ctx := context.Background()
	flow := schemas.OrderFlow
	sagatest.Poll(t, time.Minute, func() bool {
		for _, id := range l.ids() {
			if st, err := h.d.Sagas.Get(ctx, flow, id); err != nil || !st.Status.Terminal() {
				return false
			}
		}
		return true
	}, func() string {
		var open []string
		for _, id := range l.ids() {
			st, err := h.d.Sagas.Get(ctx, flow, id)
			if err != nil {
				open = append(open, fmt.Sprintf("%s: %v", id, err))
			} else if !st.Status.Terminal() {
				var steps []string
				for _, s := range st.Steps {
					steps = append(steps, s.Name+"="+string(s.Status))
				}
				open = append(open, fmt.Sprintf("%s: %s (deadline %s) %v", id, st.Status, st.Deadline.Format(time.RFC3339Nano), steps))
			}
		}
		return fmt.Sprintf("sagas did not end with the starter dead: %d of %d: %v", len(open), len(l.ids()), open)
	})
	for _, in := range h.insts["order"] {
		in.start()
	}
	rep := h.settle(l, time.Minute)
	late := 0
	dels, err := shipping.Deliveries(ctx, h.d)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dels {
		if d.Scheduled == 1 && d.Cancelled == 1 {
			late++
		}
	}
	byDeadline := 0
	for _, id := range l.ids() {
		if st, err := h.d.Sagas.Get(ctx, flow, id); err == nil && st.Status == saga.StatusCompensated && strings.Contains(st.Reason, "deadline") {
			byDeadline++
		}
	}
	if byDeadline == 0 {
		t.Error("no saga was compensated by its deadline")
	}
	t.Logf("%d sagas compensated by the deadline with the starter dead; %d late deliveries scheduled after it and cancelled; %d sagas", byDeadline, late, rep.Sagas)
	if late == 0 {
		t.Error("no late result arrived after compensation: the scenario proves nothing")
	}
}

// Scenario 4: handlers slower than the ack wait (2s): every charge takes
// 3s and every reservation 5s. The runner keeps each message alive with
// progress acknowledgements, from its arrival to its acknowledgement, so
// the broker does not hand it to a second instance meanwhile: no slow
// action runs while another run of it is under way, none runs again after
// one succeeded, and the invariants hold. A run again after a failed one
// is the step's retry policy at work: it is counted, with its reason.
func TestHandlerSlowerThanAckWait(t *testing.T) {
	slow := map[string]string{"payment": "charge:3s", "inventory": "reserve:5s"}
	h := newHarness(t, setup{instances: map[string]int{"payment": 2, "inventory": 2}, env: func(h *harness, svc string, n int) []string {
		if s, ok := slow[svc]; ok {
			return []string{"CHOREO_SLOW=" + s}
		}
		return nil
	}})
	l := h.startLoad(scale(120), 30)
	rep := h.settle(l, 3*time.Minute)
	var logs []string
	for svc := range slow {
		for _, in := range h.insts[svc] {
			logs = append(logs, in.proc().output())
		}
	}
	runs := slowRuns(t, logs)
	again, retried := 0, 0
	for k, rs := range runs {
		for i := 1; i < len(rs); i++ {
			prev, cur := rs[i-1], rs[i]
			switch {
			case cur.start < prev.end || prev.end == 0:
				again++
				t.Errorf("%s: attempt %d started at %d while attempt %d ran (%d to %d)", k, cur.attempt, cur.start, prev.attempt, prev.start, prev.end)
			case prev.outcome == "ok":
				again++
				t.Errorf("%s: attempt %d ran after attempt %d succeeded", k, cur.attempt, prev.attempt)
			default:
				retried++
				t.Logf("%s: retried after %s", k, prev.outcome)
			}
		}
	}
	if len(runs) < rep.Sagas {
		t.Errorf("%d slow actions ran for %d sagas: the scenario proves little", len(runs), rep.Sagas)
	}
	t.Logf("%d slow actions (3s and 5s against a 2s ack wait): %d ran again while running or after success, %d retried after an error", len(runs), again, retried)
}

// slowRun is one call of a slowed action, from the CHOREO_SLOW log lines.
type slowRun struct {
	attempt    int
	start, end int64 // unix ms; end 0: never finished
	outcome    string
}

// slowRuns returns the runs of each slowed action ("step saga"), in the
// order they started.
func slowRuns(t *testing.T, logs []string) map[string][]*slowRun {
	line := regexp.MustCompile(`(?m)^CHOREO_SLOW: (\w+) of (ord-\w+) attempt (\d+) (start|end) (\d+) ?(.*)$`)
	runs := map[string][]*slowRun{}
	open := map[string]*slowRun{} // "step saga attempt" -> the run not ended yet
	for _, out := range logs {
		for _, m := range line.FindAllStringSubmatch(out, -1) {
			k := m[1] + " " + m[2]
			attempt, _ := strconv.Atoi(m[3])
			at, _ := strconv.ParseInt(m[5], 10, 64)
			if m[4] == "start" {
				r := &slowRun{attempt: attempt, start: at}
				runs[k] = append(runs[k], r)
				open[k+" "+m[3]] = r
				continue
			}
			if r := open[k+" "+m[3]]; r != nil {
				r.end, r.outcome = at, m[6]
				delete(open, k+" "+m[3])
			} else {
				t.Errorf("%s: attempt %d ended and never started", k, attempt)
			}
		}
	}
	for _, rs := range runs {
		sort.Slice(rs, func(i, j int) bool { return rs[i].start < rs[j].start })
	}
	return runs
}

// Scenario 3: every event a durable consumer delivers reaches its service
// 2 to 5 times, the copies overlapping the first one's handling, and 15% of
// the final acks are lost so that the broker redelivers too. No effect is
// made twice (the services' ledgers say), and every saga ends.
func TestEveryEventDeliveredTwoToFiveTimes(t *testing.T) {
	var p *dupProxy
	h := newHarness(t, setup{instances: map[string]int{"payment": 2, "inventory": 2, "shipping": 2},
		wrap: func(h *harness, broker string) string {
			p = newDupProxy(t, strings.TrimPrefix(broker, "nats://"))
			p.copies = func() int { return 2 + h.intn(4) }
			p.dropAck = func() bool { return h.intn(100) < 15 }
			p.delay = func() time.Duration { return time.Duration(h.intn(300)) * time.Millisecond }
			h.injected = func() int64 { return p.extra.Load() + p.dropped.Load() }
			return p.url
		}})
	l := h.startLoad(scale(200), 30)
	rep := h.settle(l, 3*time.Minute)
	t.Logf("%d deliveries to durable consumers, %d extra copies, %d acks dropped (redelivered); %d sagas, double_effects=%d",
		p.deliveries.Load(), p.extra.Load(), p.dropped.Load(), rep.Sagas, rep.DoubleEffects)
	if p.extra.Load() < p.deliveries.Load() || p.dropped.Load() == 0 {
		t.Errorf("the proxy injected too little: %d deliveries, %d copies, %d acks dropped", p.deliveries.Load(), p.extra.Load(), p.dropped.Load())
	}
}
