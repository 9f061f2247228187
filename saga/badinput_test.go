package saga_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
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

// forger makes messages that look like choreo's, from a real saga's start.
type forger struct {
	t    *testing.T
	flow string
	orig *jetstream.RawStreamMsg
	js   jetstream.JetStream
}

// msg returns a copy of the real start event made over for saga id on
// subject step.phase, as choreo would append it, then changed by mutate.
func (f *forger) msg(id, step, phase string, mutate func(h nats.Header)) *nats.Msg {
	m := nats.NewMsg(fmt.Sprintf("choreo.log.%s.%s.v1.%s.%s", f.flow, id, step, phase))
	m.Header = nats.Header{}
	for k, v := range f.orig.Header {
		switch k {
		case "Nats-Subject", "Nats-Sequence", "Nats-Stream", "Nats-Time-Stamp":
			continue // the broker's, added by the read
		}
		m.Header[k] = append([]string(nil), v...)
	}
	m.Header.Set("Nats-Msg-Id", "forged-"+id)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, fmt.Sprintf("choreo.log.%s.%s.>", f.flow, id))
	m.Data = f.orig.Data
	if mutate != nil {
		mutate(m.Header)
	}
	return m
}

func TestBadInputIsDeadLettered(t *testing.T) {
	e := newEnv(t, time.Hour, nil) // a deadline, so the timer subject is read too
	e.start(t, "model")
	e.await(t, "model", saga.StatusCompleted)
	nc, js := e.srv.Connect()
	stream, err := js.Stream(context.Background(), access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	flow := e.s.flow.Name()
	orig, err := stream.GetLastMsgForSubject(context.Background(), "choreo.log."+flow+".model.v1._saga.start")
	if err != nil {
		t.Fatal(err)
	}
	f := &forger{t: t, flow: flow, orig: orig, js: js}
	big := `"` + strings.Repeat("x", 600*1024) + `"`

	cases := []struct {
		name, id string
		msg      *nats.Msg
		reason   string
	}{
		{"no headers at all", "h0", &nats.Msg{Subject: "choreo.log." + flow + ".h0.v1._saga.start", Data: []byte(`{}`)}, "missing headers"},
		{"payload not JSON", "j1", withData(f.msg("j1", "_saga", "start", nil), "{not json"), "undecodable payload"},
		{"payload of the wrong shape", "j2", withData(f.msg("j2", "_saga", "start", nil), `{"ID": 5, "Amount": "many"}`), "undecodable payload"},
		{"repeated header", "r1", f.msg("r1", "_saga", "start", func(h nats.Header) { h.Add(wire.State, h.Get(wire.State)) }), "repeated header Choreo-State"},
		{"missing header", "m1", f.msg("m1", "_saga", "start", func(h nats.Header) { h.Del(wire.State) }), "missing header Choreo-State"},
		{"malformed time", "t1", f.msg("t1", "_saga", "start", func(h nats.Header) { setField(h, 5, "!!") }), "malformed choreo-state: bad start"},
		{"malformed version", "v1", f.msg("v1", "_saga", "start", func(h nats.Header) { setField(h, 1, "one") }), "malformed choreo-state: bad number"},
		{"malformed state", "s1", f.msg("s1", "_saga", "start", func(h nats.Header) { h.Set(wire.State, "{") }), "malformed choreo-state"},
		{"compare-and-set on another saga", "o1", f.msg("o1", "_saga", "start", func(h nats.Header) {
			h.Set(jetstream.ExpectedLastSubjSeqSubjHeader, "choreo.log."+flow+".o2.>")
		}), "not appended by choreo"},
		{"unknown saga", "ghost", f.msg("ghost", "charge", "done", nil), "unknown saga"},
		{"no compare-and-set", "n1", f.msg("n1", "_saga", "start", func(h nats.Header) {
			h.Del(jetstream.ExpectedLastSubjSeqHeader)
			h.Del(jetstream.ExpectedLastSubjSeqSubjHeader)
		}), "not appended by choreo"},
		{"forged broker headers", "fb", f.msg("fb", "_saga", "start", func(h nats.Header) {
			h.Set("Nats-Subject", "choreo.log."+flow+".model.v1._saga.start")
			h.Set("Nats-Sequence", "1")
		}), "broker's own headers"},
		{"oversize", "big", withData(f.msg("big", "_saga", "start", nil), big), "oversize"},
		{"garbage command", "cmd", &nats.Msg{Subject: "choreo.cmd." + flow + ".cmd.v1.charge.undo", Data: []byte("\x00\x01")}, "missing headers"},
		{"forged command", "cmd2", &nats.Msg{Subject: "choreo.cmd." + flow + ".cmd2.v1.charge.undo", Header: nats.Header{wire.After: {"1", "2"}}}, "repeated header Choreo-After"},
		{"unknown timer", "tm2", &nats.Msg{Subject: "choreo.timer." + flow + ".tm2.v1", Header: nats.Header{wire.TimerKind: {"alarm"}}}, "unknown timer"},
		{"garbage timer", "tm", &nats.Msg{Subject: "choreo.timer." + flow + ".tm.v1", Data: []byte("tick")}, "missing headers"},
	}
	for _, tc := range cases {
		if _, err := js.PublishMsg(context.Background(), tc.msg); err != nil {
			t.Fatalf("%s: publish: %v", tc.name, err)
		}
	}
	// An event of a phase choreo does not write: no consumer reads its
	// subject, but a read of its saga quarantines it.
	if _, err := js.PublishMsg(context.Background(), f.msg("u1", "_saga", "bogus", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Get(context.Background(), e.s.flow, "u1"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("Get of a saga whose only event has an unknown phase: %v, want ErrNotFound", err)
	}
	cases = append(cases, struct {
		name, id string
		msg      *nats.Msg
		reason   string
	}{"unknown phase", "u1", nil, "unknown event _saga:bogus"})
	// A header block that is not a header block, sent by a raw client.
	rawSubject := "choreo.log." + flow + ".raw.v1._saga.start"
	sagatest.PublishRaw(t, e.srv.ClientURL(), rawSubject, "NATS/1.0\r\nthis is not a header\r\n\r\n", "{}")

	// Meanwhile real sagas go on.
	for i := range 5 {
		e.start(t, fmt.Sprintf("after%d", i))
	}
	for i := range 5 {
		e.await(t, fmt.Sprintf("after%d", i), saga.StatusCompleted)
	}

	var dls []ops.DeadLetter
	found := func(id, reason string) bool {
		for _, d := range dls {
			if strings.Contains(d.Subject, "."+id+".") || strings.HasSuffix(d.Subject, "."+id) {
				if strings.Contains(d.Reason, reason) {
					return true
				}
			}
		}
		return false
	}
	sagatest.Poll(t, 15*time.Second, func() bool {
		dls, _ = e.op.DeadLetters(context.Background(), "")
		for _, tc := range cases {
			if !found(tc.id, tc.reason) {
				return false
			}
		}
		return found("raw", "")
	}, func() string {
		var missing []string
		for _, tc := range cases {
			if !found(tc.id, tc.reason) {
				missing = append(missing, tc.name)
			}
		}
		var got []string
		for _, d := range dls {
			got = append(got, d.Subject+": "+d.Reason)
		}
		return fmt.Sprintf("not dead-lettered with the reason: %v (dead letters: %q)", missing, got)
	})
	// The oversize message is dead-lettered as its headers, its size, a
	// hash and a bounded start: never amplified.
	for _, d := range dls {
		if strings.Contains(d.Subject, ".big.") {
			if len(d.Data) > 16*1024 || d.Size != len(big) || !strings.HasPrefix(d.Header.Get("Choreo-Dlq-Hash"), "sha256:") {
				t.Errorf("oversize dead letter keeps %d bytes, size %d (want %d), hash %q", len(d.Data), d.Size, len(big), d.Header.Get("Choreo-Dlq-Hash"))
			}
		}
	}
	// A rogue event no longer stands for any saga's state.
	for _, id := range []string{"n1", "ghost", "r1"} {
		if st, err := e.c.Get(context.Background(), e.s.flow, id); err == nil && st.Status != saga.StatusCompensated {
			t.Errorf("rogue saga %s has state %s", id, st.Status)
		}
	}
	// A start that is well formed but unusable (oversize) fails its first
	// step: no saga waits for ever. (One whose payload the flow cannot
	// take fails it too: j2 below.)
	for _, id := range []string{"big"} {
		st := e.await(t, id, saga.StatusCompensated)
		if !strings.Contains(st.Step("charge").Error, "unusable trigger") {
			t.Errorf("%s: charge error %q", id, st.Step("charge").Error)
		}
	}
	// An event without a readable header block is deleted from the log: a
	// read of its saga finds nothing rather than hanging on it.
	sagatest.Poll(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := e.c.Get(ctx, e.s.flow, "raw")
		return errors.Is(err, saga.ErrNotFound)
	}, func() string { return "the raw event is still the saga's newest" })
	// List shows no saga for what Get would quarantine.
	list, err := e.c.List(context.Background(), e.s.flow)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range list {
		switch st.ID {
		case "ghost", "fb", "n1", "h0", "raw", "cmd", "cmd2", "tm", "tm2", "o1", "u1", "m1", "r1", "s1", "t1", "v1":
			t.Errorf("List shows rogue saga %s (%s)", st.ID, st.Status)
		}
	}
	// Forged broker headers did not get another saga's event deleted.
	if st, err := e.c.Get(context.Background(), e.s.flow, "model"); err != nil || st.Status != saga.StatusCompleted {
		t.Errorf("model saga after forged headers: %v %v", st, err)
	}
	// The wrong-shaped payload reached the action's decoding: that saga
	// failed its first step cleanly.
	st := e.await(t, "j2", saga.StatusCompensated)
	if !strings.Contains(st.Step("charge").Error, "undecodable payload") {
		t.Errorf("charge error %q", st.Step("charge").Error)
	}
	if !nc.IsConnected() {
		t.Error("connection lost")
	}
}

// setField replaces field i of the Choreo-State header.
func setField(h nats.Header, i int, v string) {
	fields := strings.Split(h.Get(wire.State), "|")
	fields[i] = v
	h.Set(wire.State, strings.Join(fields, "|"))
}

func withData(m *nats.Msg, data string) *nats.Msg {
	m.Data = []byte(data)
	return m
}

// An action whose result is over the event size limit has made its effect
// but cannot record it, and no reader would accept it: the step's outcome
// is unknown, it is compensated, and the saga ends.
func TestOversizeResultIsCompensated(t *testing.T) {
	type in struct{ N int }
	type out struct{ Blob string }
	a := saga.NewStep[in, out]("a", saga.WithTimeout(time.Minute))
	b := saga.NewStep[out, out]("b")
	f, err := saga.Define[in]("bigout", 1, a, b)
	if err != nil {
		t.Fatal(err)
	}
	srv := sagatest.NewServer(t)
	c := srv.Client(saga.WithMaxEventSize(64 << 10))
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	var undone, bRan atomic.Int32
	if err := saga.Handle(r, a, func(_ context.Context, v in) (out, error) {
		return out{Blob: strings.Repeat("x", 100<<10)}, nil
	}, func(_ context.Context, _ in, o out) error {
		if o.Blob != "" {
			t.Errorf("the compensation got a result that was never recorded: %d bytes", len(o.Blob))
		}
		undone.Add(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, b, func(_ context.Context, v out) (out, error) { bRan.Add(1); return v, nil }, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), c, f, "big1", in{N: 1}); err != nil {
		t.Fatal(err)
	}
	st := sagatest.AwaitStatus(t, c, f, "big1", 10*time.Second, saga.StatusCompensated, saga.StatusCompleted, saga.StatusCompensationFailed)
	if st.Status != saga.StatusCompensated || !strings.Contains(st.Reason, "step a: its result is 102411 bytes, over the 65536-byte event limit") {
		t.Errorf("saga %s (%q); want compensated, with the reason", st.Status, st.Reason)
	}
	if undone.Load() != 1 || bRan.Load() != 0 {
		t.Errorf("a compensated %d times, b ran %d times; want 1 and 0", undone.Load(), bRan.Load())
	}
}
