package engine

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// scheduledSaga is a saga recorded at t0 to begin an hour later: nothing
// triggered, no deadline.
func scheduledSaga() *State {
	return &State{Flow: "f", ID: "x", Version: 1, Status: StatusScheduled, Events: 1,
		StartedAt: t0, UpdatedAt: t0, Scheduled: t0.Add(time.Hour), Steps: []StepState{
			{Name: "a", Position: 0, Kind: CompensatableStep, Status: StepPending},
			{Name: "b", Position: 1, Kind: PivotStep, Status: StepPending},
		}}
}

// States written before scheduled starts decode as they did; a scheduled
// saga's state carries when it begins in a trailing field, after a trace
// field that may be empty.
func TestSchedCodec(t *testing.T) {
	for _, raw := range []string{
		"c3|1|r|1||0||||||",
		"c3|3|r|2||0|1||||1|a,,cr,,1,,,0",
		"c3|3|r|2||0|1||||1|a,,cr,,1,,,0|4bf92f3577b34da6a3ce929d0e0e4736",
	} {
		s, err := decodeState("f", "x", raw)
		if err != nil {
			t.Fatalf("an old state %q: %v", raw, err)
		}
		if !s.Scheduled.IsZero() || string(encodeState(s)) != raw {
			t.Errorf("old state %q reads as %+v, encodes as %q", raw, s, encodeState(s))
		}
	}
	for _, trace := range []string{"", "4bf92f3577b34da6a3ce929d0e0e4736"} {
		want := scheduledSaga()
		want.TraceID = trace
		raw := string(encodeState(want))
		if !strings.HasSuffix(raw, "|"+trace+"|1njchs0") { // an hour in µs, base 36
			t.Errorf("encoded %q", raw)
		}
		got, err := decodeState("f", "x", raw)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip of %q: %+v, %v\nwant %+v", raw, got, err, want)
		}
	}
	begun := scheduledSaga()
	if err := begun.commence(begun.Scheduled, begun.Scheduled.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	begun.Events++
	begun.settle(begun.Scheduled)
	if got, err := decodeState("f", "x", string(encodeState(begun))); err != nil || !reflect.DeepEqual(got, begun) {
		t.Fatalf("round trip of a begun saga: %+v, %v", got, err)
	}
	for _, raw := range []string{"c3|1|s|1||0||||||", "c3|1|s|1||0|||||||", "c3|1|s|1||0||||||||1"} {
		if _, err := decodeState("f", "x", raw+"|"); err == nil {
			t.Errorf("decodeState(%q) accepted", raw+"|")
		}
	}
}

// A scheduled saga triggers nothing; it begins at its time (not before),
// with the deadline given, and its first position is triggered by the
// begin; cancelled before, it ends compensated with nothing run.
func TestSchedBeginAndCancel(t *testing.T) {
	s := scheduledSaga()
	s.settle(t0)
	if s.Status != StatusScheduled || s.Steps[0].Status != StepPending || s.pivoted() || s.dueUndo() != nil {
		t.Fatalf("a scheduled saga moved: %+v", s)
	}
	if err := s.expire(t0.Add(48 * time.Hour)); err == nil {
		t.Errorf("a scheduled saga expired")
	}
	if err := s.commence(s.Scheduled.Add(-time.Second), time.Time{}); err == nil {
		t.Errorf("began early")
	}
	at := s.Scheduled.Add(time.Second)
	b := s.clone()
	b.Events++
	if err := b.commence(at, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	b.settle(at)
	if b.Status != StatusRunning || b.Deadline != at.Add(time.Minute) || b.Steps[0].Status != StepRunning || b.Steps[0].Trigger != 2 {
		t.Fatalf("begun: %+v", b)
	}
	if err := b.commence(at, time.Time{}); err == nil {
		t.Errorf("began twice")
	}
	c := s.clone()
	c.Events++
	if err := c.cancel("cancelled: not wanted"); err != nil {
		t.Fatal(err)
	}
	c.settle(t0.Add(time.Minute))
	if c.Status != StatusCompensated || c.Reason != "cancelled: not wanted" || c.EndedAt.IsZero() || c.Steps[0].Status != StepPending {
		t.Fatalf("cancelled: %+v", c)
	}
	if err := c.commence(at, time.Time{}); err == nil {
		t.Errorf("a cancelled saga began")
	}
}

// The begin timer: fired by the broker, it begins the saga at its time even
// when our clock is a little behind; published early by anyone else, it
// does nothing.
func TestSchedBeginVerdict(t *testing.T) {
	s := scheduledSaga()
	early := s.Scheduled.Add(-time.Second)
	if at := beginAt(s, true, early); !at.Equal(s.Scheduled) {
		t.Errorf("fired early by our clock: begins at %v", at)
	}
	if at := beginAt(s, false, early); !at.IsZero() {
		t.Errorf("not fired, early: begins at %v", at)
	}
	if at := beginAt(running(StatusRunning, CompensatableStep, time.Time{}), true, early); !at.IsZero() {
		t.Errorf("a running saga begins at %v", at)
	}
	v := beginVerdict(false, time.Time{})
	if v.phase != PhaseBegin || !v.done {
		t.Fatalf("verdict %+v", v)
	}
	if err := v.apply(s.clone(), early); err == nil {
		t.Errorf("applied early")
	}
	b := s.clone()
	if err := beginVerdict(true, s.Scheduled.Add(time.Hour)).apply(b, early); err != nil || b.Status != StatusRunning {
		t.Errorf("fired: %v %+v", err, b)
	}
}

// A begin stands only once its time has come by the reader's clock and the
// event's (give or take clockSkew), and with a deadline after it.
func TestSchedReplayBegin(t *testing.T) {
	prev := scheduledSaga()
	rec := func(at, deadline time.Time) *envelope {
		next := prev.clone()
		next.Events++
		next.follow(7)
		if err := next.commence(next.Scheduled, deadline); err != nil {
			t.Fatal(err)
		}
		next.settle(at)
		return &envelope{flow: "f", id: "x", step: "_saga", phase: PhaseBegin, state: next}
	}
	onTime := prev.Scheduled.Add(time.Second)
	for _, tc := range []struct {
		name           string
		at, read, dead time.Time
		reason         string
	}{
		{"on time", onTime, onTime, onTime.Add(time.Minute), ""},
		{"on time, no deadline", onTime, onTime, time.Time{}, ""},
		{"the broker's clock a little ahead", prev.Scheduled.Add(-time.Second), prev.Scheduled.Add(-time.Second), onTime, ""},
		{"early", t0.Add(time.Minute), t0.Add(time.Minute), time.Time{}, "not yet"},
		{"early, read later", t0.Add(time.Minute), onTime, time.Time{}, "not yet"},
		{"a deadline before the begin", onTime, onTime, t0.Add(time.Minute), "before the saga begins"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := rec(tc.at, tc.dead)
			next, err := replay(prev, 7, env, tc.read)
			if err == nil && string(encodeState(next)) != string(encodeState(env.state)) {
				err = errorString("its state changes more than its step and phase may")
			}
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("an honest begin was refused: %v", err)
			case tc.reason != "" && (err == nil || !strings.Contains(err.Error(), tc.reason)):
				t.Fatalf("got %v, want an error with %q", err, tc.reason)
			}
		})
	}
}
