package shoptest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/test/checker"
)

// Kind is what an order of a load is meant to do, as its card, its stock
// and its customer's country decide.
type Kind int

const (
	Confirmed   Kind = iota // paid, reserved, shipped: confirmed
	Declined                // the card is declined: rejected, nothing charged
	SoldOut                 // charged, then out of stock: rejected, refunded
	Undelivered             // charged, not delivered to: rejected, refunded
)

// Want is how a saga of the kind ends, and the order's status then.
func (k Kind) Want() (saga.Status, string) {
	if k == Confirmed {
		return saga.StatusCompleted, "confirmed"
	}
	return saga.StatusCompensated, "rejected"
}

// Mix draws n kinds with intn (rand.IntN, or a seeded schedule's): 60%
// confirmed, 15% declined, 15% sold out, 10% not delivered to.
func Mix(n int, intn func(int) int) []Kind {
	kinds := make([]Kind, n)
	for i := range kinds {
		switch r := intn(100); {
		case r < 60:
			kinds[i] = Confirmed
		case r < 75:
			kinds[i] = Declined
		case r < 90:
			kinds[i] = SoldOut
		default:
			kinds[i] = Undelivered
		}
	}
	return kinds
}

// AwaitEnded reads the order sagas ids every period until each has ended
// or bound passes, and returns the states of those that ended.
func AwaitEnded(ctx context.Context, d kit.Deps, ids []string, bound, period time.Duration) map[string]*saga.State {
	ended := map[string]*saga.State{}
	deadline := time.After(bound)
	pending := slices.Clone(ids)
	for {
		next := pending[:0]
		for _, id := range pending {
			st, err := d.Sagas.Get(ctx, schemas.OrderFlow, id)
			if err != nil || !st.Status.Terminal() {
				next = append(next, id)
				continue
			}
			ended[id] = st
		}
		pending = next
		if len(pending) == 0 {
			return ended
		}
		select {
		case <-deadline:
			return ended
		case <-ctx.Done():
			return ended
		case <-time.After(period):
		}
	}
}

// retry calls fn until it succeeds, 31 tries a second apart: the broker
// may still be electing leaders after a fault (a cluster answers "no
// responders" then). It returns fn's last error.
func retry(ctx context.Context, fn func() error) error {
	err := fn()
	for try := 0; err != nil && try < 30; try++ {
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
		err = fn()
	}
	return err
}

// ListSagas lists the ids of every order saga in the broker, retried
// while the broker recovers; it fails the test when it cannot.
func ListSagas(t testing.TB, ctx context.Context, d kit.Deps) []string {
	t.Helper()
	var list []*saga.State
	err := retry(ctx, func() (err error) {
		list, err = d.Sagas.List(ctx, schemas.OrderFlow)
		return err
	})
	if err != nil {
		t.Fatalf("list sagas: %v", err)
	}
	var out []string
	for _, s := range list {
		out = append(out, s.ID)
	}
	return out
}

// Check runs test/checker on the sagas ids, retried while the broker
// recovers; it fails the test when it cannot.
func Check(t testing.TB, ctx context.Context, d kit.Deps, ids []string) checker.Report {
	t.Helper()
	var rep checker.Report
	err := retry(ctx, func() (err error) {
		rep, err = checker.Check(ctx, d, ids)
		return err
	})
	if err != nil {
		t.Fatalf("checker: %v", err)
	}
	return rep
}
