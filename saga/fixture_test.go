package saga_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// The test flow: charge -> {reserve, invoice} -> confirm (pivot) -> notify.
type (
	Order struct {
		ID     string
		Amount int
	}
	Charged struct {
		PaymentID string
		Amount    int
	}
	Reserved  struct{ Reservation string }
	Invoiced  struct{ Invoice string }
	Confirmed struct{ OrderID string }
	Notified  struct{ Message string }
)

// shop builds a fresh flow (steps belong to one flow each) with the given
// step options.
type shop struct {
	flow                                 *saga.Flow[Order]
	charge                               *saga.Step[Order, Charged]
	reserve                              *saga.Step[Charged, Reserved]
	invoice                              *saga.Step[Charged, Invoiced]
	confirm                              *saga.Step[Order, Confirmed]
	notify                               *saga.Step[Confirmed, Notified]
	chargeOpts, reserveOpts, invoiceOpts []saga.StepOption
}

var flowSeq struct {
	sync.Mutex
	n int
}

func newShop(t testing.TB, deadline time.Duration, tweak func(s *shop)) *shop {
	t.Helper()
	s := &shop{}
	if tweak != nil {
		tweak(s)
	}
	s.charge = saga.NewStep[Order, Charged]("charge", s.chargeOpts...)
	s.reserve = saga.NewStep[Charged, Reserved]("reserve", s.reserveOpts...)
	s.invoice = saga.NewStep[Charged, Invoiced]("invoice", s.invoiceOpts...)
	s.confirm = saga.NewStep[Order, Confirmed]("confirm", saga.Pivot())
	s.notify = saga.NewStep[Confirmed, Notified]("notify", saga.Retriable(), saga.WithRetry(saga.RetryPolicy{InitialBackoff: 5 * time.Millisecond}))
	flowSeq.Lock()
	flowSeq.n++
	name := fmt.Sprintf("order%d", flowSeq.n)
	flowSeq.Unlock()
	items := []saga.Item{s.charge, saga.Parallel(s.reserve, s.invoice), s.confirm, s.notify}
	if deadline > 0 {
		items = append(items, saga.Deadline(deadline))
	}
	f, err := saga.Define[Order](name, 1, items...)
	if err != nil {
		t.Fatal(err)
	}
	s.flow = f
	return s
}

// ledger is the services' record of their effects, keyed by idempotency
// key: the evidence for "each effect happens once".
type ledger struct {
	mu      sync.Mutex
	effects map[string]int // "saga/step/action" -> times the effect happened
	behave  map[string]func(ctx context.Context, attempt int) error
}

func newLedger() *ledger {
	return &ledger{effects: map[string]int{}, behave: map[string]func(context.Context, int) error{}}
}

// on sets what a handler does in saga id: key is "step:action" or
// "step:compensation".
func (l *ledger) on(id, key string, f func(ctx context.Context, attempt int) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.behave[id+"/"+key] = f
}

// do runs the behaviour set for the call, then records the effect under
// the idempotency key (once, however often it is called).
func (l *ledger) do(ctx context.Context, phase saga.Phase) error {
	info, _ := saga.InfoFrom(ctx)
	l.mu.Lock()
	f := l.behave[info.ID+"/"+info.Step+":"+string(phase)]
	l.mu.Unlock()
	if f != nil {
		if err := f(ctx, info.Attempt); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.effects[info.IdempotencyKey()]++
	return nil
}

// count returns how often the effect of a step's action (or compensation)
// happened in saga id.
func (l *ledger) count(id, step string, phase saga.Phase) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	suffix := "/" + id + "/" + step
	if phase == saga.PhaseCompensation {
		suffix += "/compensation"
	}
	n := 0
	for k, v := range l.effects {
		if strings.HasSuffix(k, suffix) {
			n += v
		}
	}
	return n
}

// bind binds every step of s to the ledger.
func (s *shop) bind(r *saga.Runner, l *ledger) error {
	return errors.Join(
		saga.Handle(r, s.charge, func(ctx context.Context, o Order) (Charged, error) {
			return Charged{PaymentID: "pay-" + o.ID, Amount: o.Amount}, l.do(ctx, saga.PhaseAction)
		}, func(ctx context.Context, o Order, c Charged) error { return l.do(ctx, saga.PhaseCompensation) }),
		saga.Handle(r, s.reserve, func(ctx context.Context, c Charged) (Reserved, error) {
			return Reserved{Reservation: "res-" + c.PaymentID}, l.do(ctx, saga.PhaseAction)
		}, func(ctx context.Context, c Charged, _ Reserved) error { return l.do(ctx, saga.PhaseCompensation) }),
		saga.Handle(r, s.invoice, func(ctx context.Context, c Charged) (Invoiced, error) {
			return Invoiced{Invoice: "inv-" + c.PaymentID}, l.do(ctx, saga.PhaseAction)
		}, func(ctx context.Context, c Charged, _ Invoiced) error { return l.do(ctx, saga.PhaseCompensation) }),
		saga.Handle(r, s.confirm, func(ctx context.Context, o Order) (Confirmed, error) {
			return Confirmed{OrderID: o.ID}, l.do(ctx, saga.PhaseAction)
		}, nil),
		saga.Handle(r, s.notify, func(ctx context.Context, c Confirmed) (Notified, error) {
			return Notified{Message: "confirmed " + c.OrderID}, l.do(ctx, saga.PhaseAction)
		}, nil),
	)
}

// env is a server, a client and a running runner with the shop bound.
type env struct {
	srv *sagatest.Server
	c   *saga.Client
	op  *ops.Client
	s   *shop
	l   *ledger
	rec *sagatest.Recorder
	// forges is set by tests that append what choreo would not: the others
	// end by checking that a reader that appended nothing finds every
	// event of every saga honest.
	forges bool
}

func newEnv(t *testing.T, deadline time.Duration, tweak func(*shop), ropts ...saga.RunnerOption) *env {
	t.Helper()
	e := &env{srv: sagatest.NewServer(t), l: newLedger(), rec: sagatest.NewRecorder()}
	if testRing != nil {
		e.srv.SetKeyRing(testRing)
	}
	e.c = e.srv.Client()
	e.op = e.srv.Ops()
	e.s = newShop(t, deadline, tweak)
	t.Cleanup(func() {
		if !e.forges && !t.Failed() {
			e.checkLog(t)
		}
	})
	e.startRunner(t, ropts...)
	return e
}

func (e *env) startRunner(t *testing.T, ropts ...saga.RunnerOption) (stop func()) {
	t.Helper()
	ropts = append([]saga.RunnerOption{saga.WithInterceptor(e.rec.Interceptor()), saga.WithAckWait(2 * time.Second)}, ropts...)
	r, err := saga.NewRunner(e.c, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.bind(r, e.l); err != nil {
		t.Fatal(err)
	}
	return sagatest.Run(t, r)
}

func (e *env) start(t *testing.T, id string) {
	t.Helper()
	if err := saga.Start(context.Background(), e.c, e.s.flow, id, Order{ID: id, Amount: 42}); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
}

func (e *env) await(t *testing.T, id string, want ...saga.Status) *saga.State {
	t.Helper()
	return sagatest.AwaitStatus(t, e.c, e.s.flow, id, 20*time.Second, want...)
}

// checkLog reads every saga's timeline through a client that appended
// nothing, so it checks each event by replaying it on the one before, and
// wants every event of the log there: an honest event refused as forged
// is missing from it.
func (e *env) checkLog(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	_, js := e.srv.Connect()
	stream, err := js.Stream(ctx, access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	flow := e.s.flow.Name()
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter("choreo.log."+flow+".>"))
	if err != nil {
		t.Fatal(err)
	}
	perSaga := map[string]uint64{}
	for subject, n := range info.State.Subjects {
		perSaga[strings.Split(subject, ".")[3]] += n
	}
	cold := e.srv.Client()
	for id, n := range perSaga {
		tl, err := cold.Timeline(ctx, e.s.flow, id)
		if err != nil {
			t.Errorf("saga %s: %v", id, err)
			continue
		}
		if uint64(len(tl)) != n {
			t.Errorf("saga %s: a cold reader accepts %d of its %d events: %v", id, len(tl), n, tl)
		}
	}
}
