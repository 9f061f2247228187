package saga_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// appendForged appends an event on subject step.phase of saga id (flow
// version 1) the way a participant holding the credentials for that step
// could: with the compare-and-set headers right, carrying the state header
// state.
func appendForged(t *testing.T, js jetstream.JetStream, flow, id, step, phase, state string) uint64 {
	t.Helper()
	return appendForgedOn(t, js, flow, id, 1, step, phase, state)
}

// appendForgedOn is appendForged on a flow version, and for a saga that
// has no event yet too (then it is a start: compare-and-set on none).
func appendForgedOn(t *testing.T, js jetstream.JetStream, flow, id string, version int, step, phase, state string) uint64 {
	t.Helper()
	ctx := context.Background()
	stream, err := js.Stream(ctx, access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	var lastSeq uint64
	last, err := stream.GetLastMsgForSubject(ctx, wire.LogWildcard(flow, id))
	switch {
	case err == nil:
		lastSeq = last.Sequence
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		t.Fatal(err)
	}
	m := nats.NewMsg(wire.LogSubject(flow, id, version, step, phase))
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(lastSeq, 10))
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, wire.LogWildcard(flow, id))
	m.Header.Set(wire.State, state)
	m.Data = []byte(`{"PaymentID":"forged","Amount":1}`)
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatalf("the broker refused the forged event: %v", err)
	}
	return ack.Sequence
}

// stateAt is the state header of the saga log event at seq.
func stateAt(t *testing.T, js jetstream.JetStream, seq uint64) string {
	t.Helper()
	stream, err := js.Stream(context.Background(), access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetMsg(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	return m.Header.Get(wire.State)
}

// newestState is the state header of a saga's newest event.
func newestState(t *testing.T, js jetstream.JetStream, flow, id string) string {
	t.Helper()
	stream, err := js.Stream(context.Background(), access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(context.Background(), wire.LogWildcard(flow, id))
	if err != nil {
		t.Fatal(err)
	}
	return m.Header.Get(wire.State)
}

// A participant may write only what its step and phase may change. Here
// the forger holds what payment holds (it may append on charge's
// subjects) while payment is declining the charge: it appends a charge
// "done" carrying a completed saga's state, then a "reserve done" (not its
// step). Neither stands: the saga ends compensated, as payment decided,
// nothing ran on the forged events, OnEnd never saw a completed saga, and
// both are dead-lettered as forged. A second client, which appended
// nothing and checks each event by reading the ones before it, reads the
// honest state too.
func TestForgedStatesAreRefused(t *testing.T) {
	e := newEnv(t, 0, nil)
	e.forges = true
	e.start(t, "model")
	e.await(t, "model", saga.StatusCompleted)
	_, js := e.srv.Connect()
	flow := e.s.flow.Name()
	completed := newestState(t, js, flow, "model")

	charging := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	e.l.on("victim", "charge:action", func(ctx context.Context, _ int) error {
		once.Do(func() { close(charging) })
		select {
		case <-release:
		case <-ctx.Done():
		}
		return saga.Abort(errors.New("card declined"))
	})

	// An observer with a cold cache: its OnEnd sees every ended saga.
	observer := e.srv.Client()
	var mu sync.Mutex
	var ended []saga.Status
	r, err := saga.NewRunner(observer)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.OnEnd(e.s.flow, "watch", func(_ context.Context, st *saga.State) error {
		if st.ID == "victim" {
			mu.Lock()
			ended = append(ended, st.Status)
			mu.Unlock()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)

	e.start(t, "victim")
	select {
	case <-charging:
	case <-time.After(20 * time.Second):
		t.Fatal("charge never ran")
	}
	forgedDone := appendForged(t, js, flow, "victim", "charge", "done", completed)
	// The forged event is the saga's newest: a reserve done on top of it.
	honest := newestState(t, js, flow, "model")
	forgedReserve := appendForged(t, js, flow, "victim", "reserve", "done", honest)
	close(release)

	st := e.await(t, "victim", saga.StatusCompensated)
	if got := st.Step("charge").Status; got != saga.StepFailed {
		t.Errorf("charge is %s, want failed (payment declined it)", got)
	}
	for _, step := range []string{"reserve", "invoice", "confirm"} {
		if n := e.l.count("victim", step, saga.PhaseAction); n != 0 {
			t.Errorf("%s ran %d times on a forged trigger", step, n)
		}
	}
	cold, err := observer.Get(context.Background(), e.s.flow, "victim")
	if err != nil || cold.Status != saga.StatusCompensated {
		t.Fatalf("a cold reader got %v, %v", cold, err)
	}

	var dead []ops.DeadLetter
	sagatest.Poll(t, 20*time.Second, func() bool {
		dead, err = e.op.DeadLetters(context.Background(), e.s.flow.Name())
		seen := map[string]bool{}
		for _, d := range dead {
			if strings.HasPrefix(d.Reason, "forged: ") {
				seen[d.Subject] = true
			}
		}
		return err == nil && seen[wire.LogSubject(flow, "victim", 1, "charge", "done")] && seen[wire.LogSubject(flow, "victim", 1, "reserve", "done")]
	}, func() string {
		return fmt.Sprintf("dead letters (forged at %d and %d): %v %v", forgedDone, forgedReserve, reasons(dead), err)
	})

	sagatest.Poll(t, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ended) > 0
	}, func() string { return "OnEnd never saw the saga end" })
	mu.Lock()
	defer mu.Unlock()
	for _, s := range ended {
		if s != saga.StatusCompensated {
			t.Errorf("OnEnd saw the saga %s", s)
		}
	}
	tl, err := observer.Timeline(context.Background(), e.s.flow, "victim")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range tl {
		if ev.Sequence == forgedDone || ev.Sequence == forgedReserve {
			t.Errorf("the timeline shows forged event %d (%s)", ev.Sequence, ev)
		}
	}
}

// A start must be the initial state of the flow as the reader defines it:
// one that skips the charge is refused.
func TestForgedStartIsRefused(t *testing.T) {
	e := newEnv(t, 0, nil)
	e.forges = true
	e.start(t, "model")
	e.await(t, "model", saga.StatusCompleted)
	nc, js := e.srv.Connect()
	flow := e.s.flow.Name()
	stream, err := js.Stream(context.Background(), access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	start, err := stream.GetLastMsgForSubject(context.Background(), wire.LogSubject(flow, "model", 1, wire.SagaStep, "start"))
	if err != nil {
		t.Fatal(err)
	}
	// The model's first event after its start is charge done: its state
	// has charge completed and the next position running.
	tl, err := e.c.Timeline(context.Background(), e.s.flow, "model")
	if err != nil || len(tl) < 2 {
		t.Fatal(tl, err)
	}
	second, err := stream.GetMsg(context.Background(), tl[1].Sequence)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(wire.LogSubject(flow, "skip", 1, wire.SagaStep, "start"))
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, wire.LogWildcard(flow, "skip"))
	m.Header.Set(wire.State, second.Header.Get(wire.State))
	m.Data = start.Data
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 20*time.Second, func() bool {
		_, err := e.srv.Client().Get(context.Background(), e.s.flow, "skip")
		return errors.Is(err, saga.ErrNotFound)
	}, func() string { return "the forged start still stands" })
	for _, step := range []string{"charge", "reserve", "invoice"} {
		if n := e.l.count("skip", step, saga.PhaseAction); n != 0 {
			t.Errorf("%s ran %d times on a forged start", step, n)
		}
	}
}

func reasons(dead []ops.DeadLetter) []string {
	var out []string
	for _, d := range dead {
		out = append(out, d.Subject+": "+d.Reason)
	}
	return out
}

// A reader that has no definition of a saga's version (a tool that knows
// the flow by name, a version this build never compiled) cannot check the
// start, but still checks every event after it: a forged transition on a
// saga of an unknown version is refused, not trusted.
func TestUnknownVersionIsStillChecked(t *testing.T) {
	e := newEnv(t, 0, nil)
	e.forges = true
	e.start(t, "model")
	e.await(t, "model", saga.StatusCompleted)
	_, js := e.srv.Connect()
	flow := e.s.flow.Name()
	tl, err := e.c.Timeline(context.Background(), e.s.flow, "model")
	if err != nil {
		t.Fatal(err)
	}
	// Version 7 of the flow exists nowhere in this process: the model's
	// start and its completed state, as version 7's.
	as7 := func(state string) string { return strings.Replace(state, "c3|1|", "c3|7|", 1) }
	start := stateAt(t, js, tl[0].Sequence)
	appendForgedOn(t, js, flow, "ghost", 7, wire.SagaStep, "start", as7(start))
	appendForgedOn(t, js, flow, "ghost", 7, "charge", "done", as7(newestState(t, js, flow, "model")))
	st, err := e.srv.Client().Get(context.Background(), saga.Named(flow), "ghost")
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != saga.StatusRunning || st.Events != 1 || st.Version != 7 {
		t.Errorf("a reader without v7's definition read %s after %d events: the forged completion stood", st.Status, st.Events)
	}
}
