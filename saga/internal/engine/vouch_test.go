package engine

import (
	"context"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// The check reads back only as far as one identity could have appended:
// a participant that owns two consecutive steps forges the first
// (marking a later step, not its own, completed) and appends the second
// as a faithful transition from the forgery. A reader that appended
// nothing walks back through both (one identity could have written them)
// and refuses both; what stands is the saga as its start left it.
func TestCheckWalksThroughOneIdentitysEvents(t *testing.T) {
	c, nc := readClient(t)
	ctx := context.Background()
	in, out := reflect.TypeFor[readIn](), reflect.TypeFor[readOut]()
	a := NewStep("a", in, out, Owner("payment"))
	b := NewStep("b", out, out, Owner("payment"))
	cc := NewStep("c", out, out, Owner("stock"))
	d := NewStep("d", out, out, Owner("mail"))
	f, err := Define("walk", 1, in, a, b, cc, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, f, "v", []byte(`{"N":1}`)); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, wire.Stream)
	if err != nil {
		t.Fatal(err)
	}
	newest := func() (*State, uint64) {
		t.Helper()
		m, err := stream.GetLastMsgForSubject(ctx, wire.LogWildcard("walk", "v"))
		if err != nil {
			t.Fatal(err)
		}
		st, err := decodeState("walk", "v", m.Header.Get(wire.State))
		if err != nil {
			t.Fatal(err)
		}
		return st, m.Sequence
	}
	// next is what step's done makes of prev (at seq), as a reader
	// replays it: a faithful transition.
	next := func(prev *State, seq uint64, step string) *State {
		t.Helper()
		claim := prev.clone()
		claim.UpdatedAt = time.Now().UTC().Truncate(timeUnit)
		claim.Step(step).Attempts = 1
		st, err := replay(prev, seq, &envelope{flow: "walk", id: "v", step: step, version: 1, phase: PhaseDone, state: claim}, claim.UpdatedAt)
		if err != nil {
			t.Fatalf("%s done on %s: %v", step, prev.Status, err)
		}
		return st
	}
	forge := func(step string, st *State, after uint64) uint64 {
		t.Helper()
		m := nats.NewMsg(wire.LogSubject("walk", "v", 1, step, wire.PhaseDone))
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(after, 10))
		m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, wire.LogWildcard("walk", "v"))
		m.Header.Set(wire.State, string(encodeState(st)))
		m.Data = []byte(`{"M":1}`)
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	start, startSeq := newest()
	forgedA := next(start, startSeq, "a")
	forgedA.Step("c").Status = StepCompleted // not payment's to say
	seqA := forge("a", forgedA, startSeq)
	seqB := forge("b", next(forgedA, seqA, "b"), seqA) // a faithful step from the forgery

	// A reader that appended nothing: no trust in anything of the saga.
	cold, err := New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	cold.j.define(f)
	got, err := cold.Get(ctx, f, "v")
	if err != nil {
		t.Fatal(err)
	}
	if got.Events != 1 || got.Step("c").Status != StepPending || got.Step("a").Status != StepRunning {
		t.Fatalf("the cold reader believed the forgery: %d events, a %s, c %s", got.Events, got.Step("a").Status, got.Step("c").Status)
	}
	for _, seq := range []uint64{seqA, seqB} {
		if _, err := stream.GetMsg(ctx, seq); err == nil {
			t.Errorf("forged event %d is still in the log", seq)
		}
	}
}
