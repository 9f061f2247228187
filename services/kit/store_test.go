package kit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/kit"
)

// A get is answered by the nearest replica, and one that lags the leader
// (a server back from a restart, catching up) says "not found" for a value
// the leader has. The compose stack showed it: four orders' sagas ended
// while nats-1 caught up, the order service read "no order" and
// dead-lettered their ends, and the orders stayed pending. A Store acts on
// a value's absence only once the leader confirms it. Here a responder
// that always says 404 plays the lagging replica.
func TestStoreAsksTheLeaderBeforeActingOnAbsence(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := sagatest.NewServer(t)
	nc, js := srv.Connect()
	st, err := kit.OpenStore(ctx, js, "lag")
	if err != nil {
		t.Fatal(err)
	}
	kit.AsReplicated(st) // as on a cluster (one server answers every get as the leader)
	type rec struct{ N int }
	if err := st.Put(ctx, "k", rec{N: 1}); err != nil {
		t.Fatal(err)
	}
	stale, err := js.KeyValue(ctx, "lag") // a handle that still uses direct gets
	if err != nil {
		t.Fatal(err)
	}
	// The server stops answering direct gets; the lagging replica answers
	// every one of them instead.
	s, err := js.Stream(ctx, "KV_lag")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	sub, err := nc.Subscribe("$JS.API.DIRECT.GET.KV_lag.>", func(m *nats.Msg) {
		_ = m.RespondMsg(&nats.Msg{Subject: m.Reply, Header: nats.Header{"Status": {"404"}, "Description": {"Message Not Found"}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if _, err := stale.Get(ctx, "k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the lagging replica answered %v, want not found (the test's premise)", err)
	}

	var got rec
	if err := st.Get(ctx, "k", &got); err != nil || got.N != 1 {
		t.Fatalf("Get: %+v, %v; want the leader's value 1", got, err)
	}
	if err := st.Get(ctx, "missing", &got); !errors.Is(err, kit.ErrNotFound) {
		t.Fatalf("Get of a key nobody wrote: %v, want ErrNotFound", err)
	}
	// An update that refuses a missing record (the order service's end of
	// a saga) sees the record, and writes over the leader's revision.
	v, err := kit.Update(ctx, st, "k", func(r *rec) (bool, error) {
		if r.N == 0 {
			return false, errors.New("no record")
		}
		r.N++
		return true, nil
	})
	if err != nil || v.N != 2 {
		t.Fatalf("Update: %+v, %v; want 2 from the leader's 1", v, err)
	}
	// One that declines on absence does too.
	v, err = kit.Update(ctx, st, "k", func(r *rec) (bool, error) { return false, nil })
	if err != nil || v.N != 2 {
		t.Fatalf("Update that changes nothing: %+v, %v; want the leader's 2", v, err)
	}
	// A missing record stays missing, and one made by Create is made once.
	if _, err := kit.Update(ctx, st, "new", func(r *rec) (bool, error) {
		if r.N != 0 {
			return false, errors.New("taken")
		}
		r.N = 7
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := kit.Update(ctx, st, "new", func(r *rec) (bool, error) {
		if r.N != 0 {
			return false, errors.New("taken")
		}
		return true, nil
	}); err == nil || err.Error() != "taken" {
		t.Fatalf("a second create of the same key: %v, want taken", err)
	}
}
