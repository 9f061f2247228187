package engine

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/embedded"
	"github.com/choreo-go/choreo/internal/wire"
)

// readClient is a client on a server of its own. Internal tests cannot use
// sagatest, which imports this package.
func readClient(t *testing.T) (*Client, *nats.Conn) {
	t.Helper()
	s, err := embedded.Start(embedded.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return c, nc
}

type readIn struct{ N int }
type readOut struct{ M int }

// On a cluster, a read that a follower answers with a state older than
// what the reader knows is in the log goes to the stream's leader. The
// leader's answer must be the same message, with the same headers, so that
// every check applies to it alike.
func TestLeaderReadIsADirectRead(t *testing.T) {
	c, nc := readClient(t)
	ctx := context.Background()
	a := NewStep("a", reflect.TypeFor[readIn](), reflect.TypeFor[readOut]())
	f, err := Define("readflow", 1, reflect.TypeFor[readIn](), a)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, f, "r1", []byte(`{"N":7}`)); err != nil {
		t.Fatal(err)
	}
	j := c.j
	cur, seq, err := j.load(ctx, f.Name(), "r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, doneSeq, err := j.append(ctx, cur, seq, entry{step: "a", phase: PhaseDone, data: []byte(`{"M":8}`),
		apply: func(s *State, now time.Time) error { return s.complete("a", 1, now) }})
	if err != nil {
		t.Fatal(err)
	}
	// A forged event, with its own copy of the broker's headers.
	forged := nats.NewMsg(wire.LogSubject(f.Name(), "r2", 1, wire.SagaStep, string(PhaseStart)))
	forged.Header.Set(jetstream.SequenceHeader, "1")
	forged.Data = []byte("{}")
	if err := nc.PublishMsg(forged); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{wire.LogWildcard(f.Name(), "r1"), wire.LogSubject(f.Name(), "r1", 1, wire.SagaStep, string(PhaseStart)), wire.LogWildcard(f.Name(), "r2")} {
		dm, dseq, derr := j.directLast(ctx, subject)
		lm, lseq, lerr := j.leaderLast(ctx, subject)
		if derr != nil || lerr != nil {
			t.Fatalf("%s: direct %v, leader %v", subject, derr, lerr)
		}
		if dseq != lseq || string(dm.Data) != string(lm.Data) {
			t.Errorf("%s: direct read %d %q, leader read %d %q", subject, dseq, dm.Data, lseq, lm.Data)
		}
		for k, want := range dm.Header {
			if got := lm.Header.Values(k); !reflect.DeepEqual(got, want) && k != jetstream.StreamHeader && k != "Nats-Time-Stamp" && k != "Nats-Num-Pending" && k != "Nats-Last-Sequence" {
				t.Errorf("%s: header %s: direct %q, leader %q", subject, k, want, got)
			}
		}
		for k := range lm.Header {
			if len(dm.Header.Values(k)) == 0 {
				t.Errorf("%s: header %s only in the leader's read", subject, k)
			}
		}
	}
	if _, _, err := j.leaderLast(ctx, wire.LogWildcard(f.Name(), "nobody")); !errors.Is(err, ErrNotFound) {
		t.Errorf("leader read of no saga: %v, want ErrNotFound", err)
	}
	// lastMsg goes to the leader when the answer is older than min: on one
	// server the answer is the same, and min past the log changes nothing.
	c.opts.replicas = 3
	defer func() { c.opts.replicas = 1 }()
	st, lseq, err := j.load(ctx, f.Name(), "r1", 1<<40)
	if err != nil || st.Step("a").Status != StepCompleted || lseq != doneSeq {
		t.Errorf("load past the log: %+v %d %v", st, lseq, err)
	}
	if _, _, err := j.load(ctx, f.Name(), "r2", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("load of a forged saga through the leader: %v, want it quarantined (ErrNotFound)", err)
	}
}
