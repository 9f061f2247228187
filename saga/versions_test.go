package saga_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// A trip, in two versions: v1 books a flight then a hotel; v2 books a
// flight, a car, then the hotel. flight and hotel are shared (the same
// step values); car is new.
type (
	Trip struct{ Who string }
	Seat struct{ Who, Flight string }
)

type trip struct {
	name                      string
	car, hotel, pay           *saga.Step[Seat, Seat]
	book                      *saga.Step[Trip, Seat]
	v1, v2                    *saga.Flow[Trip]
	mu                        sync.Mutex
	calls                     []string // "v1 hotel:action"
	hold                      map[string]chan struct{}
	compensations, bookAborts map[string]int
}

// newTrip declares the steps and defines both versions; v1 is
// book -> hotel, v2 is book -> car -> hotel, both with a pivot last.
func newTrip(t *testing.T) *trip {
	t.Helper()
	flowSeq.Lock()
	flowSeq.n++
	name := fmt.Sprintf("trip%d", flowSeq.n)
	flowSeq.Unlock()
	tr := &trip{name: name, hold: map[string]chan struct{}{}, compensations: map[string]int{}, bookAborts: map[string]int{}}
	tr.book = saga.NewStep[Trip, Seat]("book", saga.Owner("airline"))
	tr.car = saga.NewStep[Seat, Seat]("car", saga.Owner("rental"))
	tr.hotel = saga.NewStep[Seat, Seat]("hotel", saga.Owner("hotel"))
	tr.pay = saga.NewStep[Seat, Seat]("pay", saga.Pivot(), saga.Owner("bank"))
	var err error
	if tr.v1, err = saga.Define[Trip](name, 1, tr.book, tr.hotel, tr.pay, saga.StartedBy("agent")); err != nil {
		t.Fatal(err)
	}
	if tr.v2, err = saga.Define[Trip](name, 2, tr.book, tr.car, tr.hotel, tr.pay, saga.StartedBy("agent")); err != nil {
		t.Fatalf("v2 reuses v1's steps: %v", err)
	}
	return tr
}

// bind binds the steps given (by name) in r; every call is recorded with
// the version it ran on, and a step held for a saga waits until released.
func (tr *trip) bind(t *testing.T, r *saga.Runner, steps ...string) {
	t.Helper()
	act := func(ctx context.Context, in Seat) (Seat, error) {
		info, _ := saga.InfoFrom(ctx)
		tr.mu.Lock()
		tr.calls = append(tr.calls, fmt.Sprintf("%s v%d %s:action", info.ID, info.Version, info.Step))
		hold := tr.hold[info.ID+"/"+info.Step]
		tr.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-ctx.Done():
				return in, ctx.Err()
			}
		}
		return in, nil
	}
	undo := func(ctx context.Context, in, out Seat) error {
		info, _ := saga.InfoFrom(ctx)
		tr.mu.Lock()
		defer tr.mu.Unlock()
		tr.calls = append(tr.calls, fmt.Sprintf("%s v%d %s:compensation", info.ID, info.Version, info.Step))
		tr.compensations[info.ID+"/"+info.Step]++
		return nil
	}
	for _, s := range steps {
		var err error
		switch s {
		case "book":
			err = saga.Handle(r, tr.book, func(ctx context.Context, in Trip) (Seat, error) {
				_, err := act(ctx, Seat{Who: in.Who})
				return Seat{Who: in.Who, Flight: "LH1"}, err
			}, func(ctx context.Context, in Trip, out Seat) error { return undo(ctx, Seat{}, out) })
		case "car":
			err = saga.Handle(r, tr.car, act, undo)
		case "hotel":
			err = saga.Handle(r, tr.hotel, act, undo)
		case "pay":
			err = saga.Handle(r, tr.pay, act, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (tr *trip) runner(t *testing.T, c *saga.Client, steps ...string) (stop func()) {
	t.Helper()
	r, err := saga.NewRunner(c, saga.WithAckWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	tr.bind(t, r, steps...)
	return sagatest.Run(t, r)
}

func (tr *trip) callsOf(id string) []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for _, c := range tr.calls {
		if strings.HasPrefix(c, id+" ") {
			out = append(out, strings.TrimPrefix(c, id+" "))
		}
	}
	return out
}

func (tr *trip) holdStep(id, step string) (release func()) {
	ch := make(chan struct{})
	tr.mu.Lock()
	tr.hold[id+"/"+step] = ch
	tr.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// The scenario: a v1 saga waits at hotel while no runner serves
// it; v2 is deployed (same flow name, a step inserted); the v1 saga ends
// on v1 (no car), and a new saga starts on v2.
func TestVersionOneSagaEndsOnVersionOne(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newTrip(t)
	ctx := context.Background()

	// Deployed first: only v1 is known, and only its first step served.
	c1 := srv.Client()
	tr.runner(t, c1, "book")
	if err := saga.Start(ctx, c1, tr.v1, "old", Trip{Who: "ada"}); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 20*time.Second, func() bool {
		st, err := c1.Get(ctx, tr.v1, "old")
		return err == nil && st.Step("hotel").Status == saga.StepRunning && st.Step("hotel").Unserved
	}, func() string { st, err := c1.Get(ctx, tr.v1, "old"); return fmt.Sprintf("%+v %v", st, err) })
	st, _ := c1.Get(ctx, tr.v1, "old")
	if w := st.Step("hotel").Waiting; !strings.Contains(w, tr.name+" v1") {
		t.Errorf("Get says %q; want it to name the version the saga waits for (%s v1)", w, tr.name)
	}

	// v1+v2 deployed: one runner binds every step, in both versions.
	c2 := srv.Client()
	tr.runner(t, c2, "book", "car", "hotel", "pay")
	old := sagatest.AwaitStatus(t, c2, tr.v1, "old", 20*time.Second, saga.StatusCompleted)
	if old.Version != 1 || old.Step("car") != nil {
		t.Errorf("the v1 saga ended on v%d with steps %+v; want v1 without car", old.Version, old.Steps)
	}
	if got, want := tr.callsOf("old"), []string{"v1 book:action", "v1 hotel:action", "v1 pay:action"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("v1 saga calls %v, want %v", got, want)
	}

	// A new saga starts on the version named: v2 (naming v1 would start
	// v1, whatever else c2 knows; see TestStartStartsTheVersionNamed).
	if err := saga.Start(ctx, c2, tr.v2, "new", Trip{Who: "bob"}); err != nil {
		t.Fatal(err)
	}
	fresh := sagatest.AwaitStatus(t, c2, tr.v2, "new", 20*time.Second, saga.StatusCompleted)
	if fresh.Version != 2 {
		t.Errorf("new saga on v%d, want v2", fresh.Version)
	}
	if got, want := tr.callsOf("new"), []string{"v2 book:action", "v2 car:action", "v2 hotel:action", "v2 pay:action"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("v2 saga calls %v, want %v", got, want)
	}
	// Starting an id again is harmless whatever the version.
	if err := saga.Start(ctx, c2, tr.v2, "old", Trip{Who: "ada"}); err != nil {
		t.Fatal(err)
	}
	if st, err := c2.Get(ctx, tr.v2, "old"); err != nil || st.Version != 1 {
		t.Errorf("restart of an existing id changed it: %+v %v", st, err)
	}
	// The registry lists what the runners serve.
	flows, err := srv.Ops().Flows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range flows {
		if f.Name == tr.name {
			got = append(got, fmt.Sprintf("v%d:%d steps", f.Version, len(f.Steps)))
		}
	}
	if fmt.Sprint(got) != "[v1:3 steps v2:4 steps]" {
		t.Errorf("registered versions %v", got)
	}
}

// A runner of one version never receives another version's work: with a
// v1-only instance and a v2-only instance, each saga runs on its own.
func TestVersionsAreRoutedToTheirRunners(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newTrip(t)
	ctx := context.Background()
	// Two deployments that know one version each: separate definitions.
	only := func(v int) (*saga.Flow[Trip], *trip) {
		o := &trip{name: tr.name, hold: map[string]chan struct{}{}, compensations: map[string]int{}}
		o.book = saga.NewStep[Trip, Seat]("book")
		o.car = saga.NewStep[Seat, Seat]("car")
		o.hotel = saga.NewStep[Seat, Seat]("hotel")
		o.pay = saga.NewStep[Seat, Seat]("pay", saga.Pivot())
		items := []saga.Item{o.book, o.hotel, o.pay}
		if v == 2 {
			items = []saga.Item{o.book, o.car, o.hotel, o.pay}
		}
		f, err := saga.Define[Trip](tr.name, v, items...)
		if err != nil {
			t.Fatal(err)
		}
		return f, o
	}
	f1, t1 := only(1)
	f2, t2 := only(2)
	c1, c2 := srv.Client(), srv.Client()
	t1.runner(t, c1, "book", "hotel", "pay")
	t2.runner(t, c2, "book", "car", "hotel", "pay")
	for i := range 10 {
		if err := saga.Start(ctx, c1, f1, fmt.Sprintf("a%d", i), Trip{}); err != nil {
			t.Fatal(err)
		}
		if err := saga.Start(ctx, c2, f2, fmt.Sprintf("b%d", i), Trip{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		sagatest.AwaitStatus(t, c1, f1, fmt.Sprintf("a%d", i), 30*time.Second, saga.StatusCompleted)
		sagatest.AwaitStatus(t, c2, f2, fmt.Sprintf("b%d", i), 30*time.Second, saga.StatusCompleted)
	}
	for _, c := range t1.calls {
		if !strings.Contains(c, " v1 ") {
			t.Errorf("the v1-only runner ran %s", c)
		}
	}
	for _, c := range t2.calls {
		if !strings.Contains(c, " v2 ") {
			t.Errorf("the v2-only runner ran %s", c)
		}
	}
	if len(t1.calls) != 30 || len(t2.calls) != 40 {
		t.Errorf("calls: v1 runner %d (want 30), v2 runner %d (want 40)", len(t1.calls), len(t2.calls))
	}
}

func TestDefineChecksVersionsAgree(t *testing.T) {
	a := saga.NewStep[Trip, Seat]("a")
	b := saga.NewStep[Seat, Seat]("b")
	if _, err := saga.Define[Trip]("agree", 1, a, b); err != nil {
		t.Fatal(err)
	}
	if _, err := saga.Define[Trip]("agree", 2, a, saga.NewStep[Seat, Seat]("c"), b); err != nil {
		t.Fatalf("a later version reusing steps: %v", err)
	}
	if _, err := saga.Define[Trip]("other-flow", 1, a); !errors.Is(err, saga.ErrInvalidFlow) || !strings.Contains(err.Error(), "another version of its flow") {
		t.Errorf("a step reused by another flow: %v", err)
	}
	// A step of the same name with other types, in a new version: refused.
	_, err := saga.Define[Trip]("agree", 3, a, saga.NewStep[Seat, Trip]("b"))
	if !errors.Is(err, saga.ErrInvalidFlow) || !strings.Contains(err.Error(), "must agree") {
		t.Errorf("a shared step changed its types: %v", err)
	}
	_, err = saga.Define[Trip]("agree", 3, a, saga.NewStep[Seat, Seat]("b", saga.Pivot()))
	if !errors.Is(err, saga.ErrInvalidFlow) || !strings.Contains(err.Error(), "must agree") {
		t.Errorf("a shared step changed its kind: %v", err)
	}
	// A new name for the changed step is the way.
	if _, err := saga.Define[Trip]("agree", 3, a, saga.NewStep[Seat, Trip]("b2")); err != nil {
		t.Errorf("a renamed step: %v", err)
	}
}

// Drain: new starts of the version are refused (never moved to another
// version), the saga in flight finishes on it, the report says what is
// left, and once nothing is the version reads drained.
func TestRetireDrainLetsSagasFinish(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newTrip(t)
	ctx := context.Background()
	c := srv.Client()
	release := tr.holdStep("d1", "hotel")
	defer release()
	tr.runner(t, c, "book", "car", "hotel", "pay")
	if err := saga.Start(ctx, c, tr.v1, "d1", Trip{}); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 20*time.Second, func() bool { return len(tr.callsOf("d1")) == 2 }, func() string { return fmt.Sprint(tr.callsOf("d1")) })

	admin := srv.Ops()
	rep, err := admin.Retire(ctx, tr.v1.Name(), 1, ops.Drain, "v2 books cars")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != ops.VersionDraining || rep.Left() != 1 || rep.InFlight[0] != "d1" || !rep.Registered {
		t.Errorf("drain report %+v", rep)
	}
	// A starter in the retiring process refuses at once, and never starts
	// another version in the drained one's place.
	if err := saga.Start(ctx, c, tr.v1, "refused", Trip{}); !errors.Is(err, saga.ErrRetired) {
		t.Errorf("a start of the draining version right after Retire: %v", err)
	}
	if _, err := c.Get(ctx, tr.v1, "refused"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("the refused saga exists: %v", err)
	}
	if err := saga.Start(ctx, c, tr.v2, "d2", Trip{}); err != nil {
		t.Fatalf("a start of v2: %v", err)
	}
	if st := sagatest.AwaitStatus(t, c, tr.v2, "d2", 20*time.Second, saga.StatusCompleted); st.Version != 2 {
		t.Errorf("d2 on v%d", st.Version)
	}

	release()
	d1 := sagatest.AwaitStatus(t, c, tr.v1, "d1", 20*time.Second, saga.StatusCompleted)
	vs, err := admin.Versions(ctx, tr.v1.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Version != 1 || vs[0].Left() != 0 || vs[0].Sagas[saga.StatusCompleted] != 1 || vs[1].Status != ops.VersionActive || vs[1].Sagas[saga.StatusCompleted] != 1 {
		t.Errorf("versions after the drain: %+v", vs)
	}
	// Drained, with the time the last of its sagas ended.
	if vs[0].Status != ops.VersionDrained || !vs[0].Drained.Equal(d1.EndedAt) || vs[0].Since.IsZero() {
		t.Errorf("v1 after its last saga ended: status %s, drained %v (d1 ended %v)", vs[0].Status, vs[0].Drained, d1.EndedAt)
	}
	if !vs[1].Drained.IsZero() {
		t.Errorf("an active version reads drained at %v", vs[1].Drained)
	}
	if err := admin.Reinstate(ctx, tr.v1.Name(), 1); err != nil {
		t.Fatal(err)
	}
	if err := saga.Start(ctx, c, tr.v1, "again", Trip{}); err != nil {
		t.Errorf("a start of the reinstated version, in the process that reinstated it: %v", err)
	}
}

// Compensate: every saga of the retired version that has not passed its
// pivot compensates with the reason, on the version's runners; one past
// its pivot is left to finish, and reported.
func TestRetireCompensatesInFlight(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newTrip(t)
	ctx := context.Background()
	c := srv.Client()
	releasePay := tr.holdStep("p1", "pay")
	defer releasePay()
	releaseW1, releaseW2 := tr.holdStep("w1", "hotel"), tr.holdStep("w2", "hotel")
	defer releaseW1()
	defer releaseW2()
	tr.runner(t, c, "book", "hotel", "pay")
	for _, id := range []string{"w1", "w2", "p1"} {
		if err := saga.Start(ctx, c, tr.v1, id, Trip{}); err != nil {
			t.Fatal(err)
		}
	}
	sagatest.Poll(t, 20*time.Second, func() bool {
		return len(tr.callsOf("w1")) == 2 && len(tr.callsOf("w2")) == 2 && len(tr.callsOf("p1")) == 3
	}, func() string { return fmt.Sprint(tr.calls) })

	admin := srv.Ops()
	rep, err := admin.Retire(ctx, tr.v1.Name(), 1, ops.CompensateInFlight, "fare rules changed")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != ops.VersionRetired || fmt.Sprint(rep.Forward) != "[p1]" {
		t.Errorf("retire report %+v", rep)
	}
	releaseW1() // their results arrive late: recorded, then compensated
	releaseW2()
	for _, id := range []string{"w1", "w2"} {
		st := sagatest.AwaitStatus(t, c, tr.v1, id, 30*time.Second, saga.StatusCompensated)
		if !strings.Contains(st.Reason, "retired: fare rules changed") {
			t.Errorf("%s compensated for %q", id, st.Reason)
		}
		tr.mu.Lock()
		nb, nh := tr.compensations[id+"/book"], tr.compensations[id+"/hotel"]
		tr.mu.Unlock()
		if nb != 1 || nh != 1 {
			t.Errorf("%s: book compensated %d times, hotel %d; want 1 each", id, nb, nh)
		}
	}
	releasePay()
	sagatest.AwaitStatus(t, c, tr.v1, "p1", 30*time.Second, saga.StatusCompleted)
	if err := saga.Start(ctx, c, tr.v1, "late", Trip{}); !errors.Is(err, saga.ErrRetired) {
		t.Errorf("a start of the retired version: %v", err)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t, 0, nil)
	ctx := context.Background()
	release, started := make(chan struct{}), make(chan struct{}, 1)
	e.l.on("c1", "reserve:action", func(ctx context.Context, _ int) error {
		select {
		case started <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	e.start(t, "c1")
	// Cancel while reserve's action runs: a step whose action had not
	// started when the saga began compensating is skipped, not compensated.
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("reserve did not start")
	}
	if err := e.op.Cancel(ctx, e.s.flow.Name(), "c1", ""); !errors.Is(err, saga.ErrInvalidOption) {
		t.Errorf("a cancel without a reason: %v", err)
	}
	if err := e.op.Cancel(ctx, e.s.flow.Name(), "c1", "customer called"); err != nil {
		t.Fatal(err)
	}
	close(release) // reserve's result comes after the cancel: compensated too
	st := e.await(t, "c1", saga.StatusCompensated)
	if st.Reason != "cancelled: customer called" || e.l.count("c1", "charge", saga.PhaseCompensation) != 1 || e.l.count("c1", "reserve", saga.PhaseCompensation) != 1 {
		t.Errorf("after cancel: reason %q, charge compensated %d", st.Reason, e.l.count("c1", "charge", saga.PhaseCompensation))
	}
	if err := e.op.Cancel(ctx, e.s.flow.Name(), "c1", "again"); !errors.Is(err, ops.ErrNotRunning) {
		t.Errorf("cancel of a compensated saga: %v", err)
	}
	if err := e.op.Cancel(ctx, e.s.flow.Name(), "nope", "x"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("cancel of no saga: %v", err)
	}
}

// The sweep runs on each version: each compensates right on its own.
func TestSweepBothVersions(t *testing.T) {
	tr := newTrip(t)
	srv := sagatest.NewServer(t)
	c := srv.Client()
	for _, f := range []*saga.Flow[Trip]{tr.v1, tr.v2} {
		t.Run(fmt.Sprintf("v%d", f.Version()), func(t *testing.T) {
			sagatest.RunSweep(t, sagatest.Sweep[Trip]{Flow: f, Input: Trip{Who: "x"}, Client: c, Bind: func(r *saga.Runner) error {
				tr.bind(t, r, "book", "car", "hotel", "pay")
				return nil
			}})
		})
	}
}

// Issue 20: Start starts the version it is given, not the newest the
// client knows: a client that bound every step of v1 and v2 (so knows
// both) starts v1 when told v1, and v2 when told v2.
func TestStartStartsTheVersionNamed(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newTrip(t)
	ctx := context.Background()
	c := srv.Client()
	tr.runner(t, c, "book", "car", "hotel", "pay")
	for _, f := range []*saga.Flow[Trip]{tr.v1, tr.v2} {
		id := fmt.Sprintf("on-v%d", f.Version())
		if err := saga.Start(ctx, c, f, id, Trip{}); err != nil {
			t.Fatal(err)
		}
		if st := sagatest.AwaitStatus(t, c, f, id, 20*time.Second, saga.StatusCompleted); st.Version != f.Version() {
			t.Errorf("Start with v%d started v%d", f.Version(), st.Version)
		}
	}
}

// Issue 20: while starters in the retiring process start sagas of the
// version as fast as they can, Retire refuses them at once (not a second
// later), none starts after a refusal, and the report counts every saga
// that started.
func TestRetireRefusesAtOnceAndCountsEveryStart(t *testing.T) {
	srv := sagatest.NewServer(t)
	tr := newTrip(t)
	ctx := context.Background()
	c := srv.Client()
	tr.runner(t, c, "book") // sagas stay in flight at hotel
	starters := []*saga.Client{c, srv.Client()}
	var (
		mu        sync.Mutex
		started   []string
		refusedAt = make([]time.Time, len(starters))
		late      []string // started after its starter was refused
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range starters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("s%d-%d", i, n)
				err := saga.Start(ctx, s, tr.v1, id, Trip{})
				mu.Lock()
				switch {
				case err == nil && !refusedAt[i].IsZero():
					late = append(late, id)
					started = append(started, id)
				case err == nil:
					started = append(started, id)
				case errors.Is(err, saga.ErrRetired):
					if refusedAt[i].IsZero() {
						refusedAt[i] = time.Now()
					}
				default:
					t.Errorf("start %s: %v", id, err)
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	sagatest.Poll(t, 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(started) >= 10 }, func() string { return "the starters started nothing" })
	rep, err := srv.Ops().Retire(ctx, tr.v1.Name(), 1, ops.Drain, "v2 rents cars")
	returned := time.Now()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, at := range refusedAt {
		// Retire waits for other processes' starts (a second and more)
		// before it returns; this process refused long before that.
		if at.IsZero() || returned.Sub(at) < 900*time.Millisecond {
			t.Errorf("starter %d first refused at %v, Retire returned at %v: not at once", i, at, returned)
		}
	}
	if len(late) > 0 {
		t.Errorf("started after a refusal: %v", late)
	}
	total := 0
	for _, n := range rep.Sagas {
		total += n
	}
	if total != len(started) || rep.Left() != len(started) {
		t.Errorf("the report counts %d sagas (%d in flight); %d started", total, rep.Left(), len(started))
	}
}
