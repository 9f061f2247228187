package inventory

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/nats-io/nats.go/jetstream"
)

// startWriter returns a service whose writer runs until ctx ends, on a
// warehouse of stock units of "a".
func startWriter(t *testing.T, ctx context.Context, stock int) (*Service, jetstream.JetStream, *kit.Store) {
	t.Helper()
	_, js := sagatest.NewServer(t).Connect()
	store, err := kit.OpenStore(ctx, js, "inventory")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, key, Warehouse{Stock: map[string]int{"a": stock}, Reservations: map[string]*Reservation{}}); err != nil {
		t.Fatal(err)
	}
	s := New(kit.Deps{})
	s.store = store
	go func() { _ = s.writer(ctx) }()
	return s, js, store
}

// Handlers racing to change the one warehouse value are applied together,
// each once, in fewer writes than changes; one that fails changes nothing
// and fails alone.
func TestWritesAreGroupCommitted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, js, store := startWriter(t, ctx, 150)
	now := time.Now().UTC()
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.write(ctx, func(w *Warehouse) (bool, error) {
				_, changed, err := w.Reserve(fmt.Sprintf("o%d", i), []schemas.Item{{SKU: "a", Qty: 1}}, now)
				return changed, err
			})
		}()
	}
	wg.Wait()
	short := 0
	for _, err := range errs {
		if err != nil {
			short++
		}
	}
	var w Warehouse
	if err := store.Get(ctx, key, &w); err != nil {
		t.Fatal(err)
	}
	if short != n-150 || w.Stock["a"] != 0 || len(w.Reservations) != 150 {
		t.Errorf("%d refused, stock %d, %d reservations; want %d, 0, 150", short, w.Stock["a"], len(w.Reservations), n-150)
	}
	kv, err := js.KeyValue(ctx, "inventory")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if e.Revision() >= 150 {
		t.Errorf("%d writes for 150 reservations: not batched", e.Revision()-1)
	}
	t.Logf("%d reservations in %d writes", len(w.Reservations), e.Revision()-1)
	cancel()
	<-s.closed
	if err := s.write(context.Background(), func(*Warehouse) (bool, error) { return false, nil }); err == nil {
		t.Error("a write after the writer stopped succeeded")
	}
}

// A batch that cannot be written fails every change in it: none of their
// handlers may report an effect that was not made (a release reported
// done without its write left a live reservation behind a compensated
// order, in the soak's broker-kill and rolling-restart runs).
func TestAFailedBatchFailsEveryChange(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, js, _ := startWriter(t, ctx, 10)
	// The first change holds the writer while the others queue up.
	gate, inside := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.write(ctx, func(*Warehouse) (bool, error) {
			close(inside)
			<-gate
			return false, nil
		})
	}()
	<-inside
	const n = 10
	errs := make(chan error, n)
	var started atomic.Int32
	for i := range n {
		go func() {
			started.Add(1)
			errs <- s.write(ctx, func(w *Warehouse) (bool, error) {
				_, changed, err := w.Reserve(fmt.Sprintf("q%d", i), []schemas.Item{{SKU: "a", Qty: 1}}, time.Now())
				return changed, err
			})
		}()
	}
	sagatest.Poll(t, 5*time.Second, func() bool { return started.Load() == n }, func() string { return "the changes did not start" })
	if err := js.DeleteKeyValue(ctx, "inventory"); err != nil {
		t.Fatal(err)
	}
	close(gate)
	<-first
	for range n {
		if err := <-errs; err == nil {
			t.Error("a change reported written after its batch failed")
		}
	}
}
