package engine

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleState() *State {
	t0 := time.Date(2026, 11, 22, 3, 4, 5, 6000, time.UTC)
	return &State{
		Flow: "order", ID: "o-1", Version: 3, Status: StatusCompensating, Events: 7, Epoch: 1,
		StartedAt: t0, UpdatedAt: t0.Add(time.Second), Deadline: t0.Add(time.Minute),
		Reason:  "step pay: card declined | really; a,b % 100",
		earlier: []uint64{7, 9, 120000, 120001, 1 << 40},
		Steps: []StepState{
			{Name: "pay", Position: 0, Kind: CompensatableStep, Status: StepCompleted, Attempts: 2, Trigger: 1, Done: 2, StartedAt: t0, EndedAt: t0.Add(time.Millisecond), CompensationAttempts: 2, CompensationError: "refund api: 503, try; later"},
			{Name: "ship", Position: 1, Kind: PivotStep, Status: StepFailed, Attempts: 1, Trigger: 2, Error: "no, sir; \"never\" |", StartedAt: t0},
			{Name: "mail", Position: 2, Kind: RetriableStep, Status: StepPending},
		},
	}
}

func TestStateCodecRoundTrip(t *testing.T) {
	want := sampleState()
	got, err := decodeState(want.Flow, want.ID, string(encodeState(want)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got  %+v\n want %+v", got, want)
	}
	empty := &State{Flow: "f", ID: "i", Version: 1, Status: StatusRunning, Events: 1, StartedAt: time.UnixMicro(5).UTC()}
	if got, err := decodeState("f", "i", string(encodeState(empty))); err != nil || !reflect.DeepEqual(got, empty) {
		t.Errorf("empty round trip: %+v %v", got, err)
	}
}

func TestStateCodecRejects(t *testing.T) {
	for _, raw := range []string{"", "{}", "c3|a", "c2|1|r|1||0|||||||", "c3|x|r|1||0||||||", "c3|1|r|0||0||||||",
		"c3|1|q|1||0||||||", "c3|1|r|1||0||||%zz||", "c3|1|r|1||0||||||a,0", "c3|1|r|1||0||||||a,,cp,,,,,,,,,,,,,",
		"c3|1|r|1||0||||||a,,wp", "c3|1|r|1||0||||||a.b,,cp", "c3|1|r|1||!!||||||", "c3|1|r|1||0|zz!|||||",
		"c3|1|r|1|x|0||||||", "c3|1|r|1||0||||||a,,cp,-1", "c3|1|r|1||0||||||a,,cp;", "c3|1|r|1||0|||||||",
		"c3|1|r|1||0|||||5,0|", "c3|1|r|1||0|||||5,!|", "c3|1|r|1||0|||||,|"} {
		if _, err := decodeState("f", "i", raw); err == nil {
			t.Errorf("decodeState(%q) accepted", raw)
		}
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add(string(encodeState(sampleState())))
	f.Add("c3|1|r|1||0||||||")
	f.Add("c3|1|r|3||0|||||a,5|s,,cc,1,1,2;t,1,cr,,3")
	f.Add("c3|1|s|1||hojub6mtc0|0|||||a,,cp;b,1,cp||1njchs0")
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := decodeState("f", "i", raw)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes the same.
		again, err := decodeState("f", "i", string(encodeState(s)))
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("re-decode of %q: %+v %v", raw, again, err)
		}
	})
}

// The state a hop carries grows by a few bytes per step, not by a record
// of every field: a pending step is its name and four bytes.
func TestStateCodecIsCompact(t *testing.T) {
	f := &flowDef{name: "f", version: 1}
	for i := range 8 {
		f.steps = append(f.steps, &stepDef{name: "step" + string(rune('a'+i)), kind: CompensatableStep, pos: i})
	}
	st := newState(f, "id", time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC))
	raw := encodeState(st)
	if len(raw) > 128 {
		t.Errorf("state of 8 steps, one running: %d bytes (%s), want at most 128", len(raw), raw)
	}
}

// A saga retried for hours lists its first events, then stops listing:
// its state does not grow with every retry, and its expiry purges.
func TestEarlierEventsAreBounded(t *testing.T) {
	s := &State{Flow: "f", ID: "i", Version: 1, Status: StatusRunning, Events: 1, StartedAt: time.UnixMicro(5).UTC()}
	for i := range maxEarlier {
		s.follow(uint64(10 + i))
	}
	if len(s.earlier) != maxEarlier || s.overflow {
		t.Fatalf("after %d events: %d listed, overflow %v", maxEarlier, len(s.earlier), s.overflow)
	}
	short := len(encodeState(s))
	s.follow(1000)
	if s.earlier != nil || !s.overflow {
		t.Fatalf("past the bound: %d listed, overflow %v", len(s.earlier), s.overflow)
	}
	got, err := decodeState("f", "i", string(encodeState(s)))
	if err != nil || !got.overflow || got.earlier != nil || len(encodeState(s)) >= short {
		t.Errorf("overflowed state: %+v %v (%d bytes, listed %d)", got, err, len(encodeState(s)), short)
	}
}

// A paused saga's state and a held step travel in the codec's trailing
// fields, and read back as they were.
func TestCodecPausedAndHeld(t *testing.T) {
	s := &State{Flow: "f", ID: "i", Version: 1, Status: StatusRunning, Events: 3, StartedAt: time.UnixMicro(1_700_000_000_000_000).UTC()}
	s.UpdatedAt = s.StartedAt
	s.Steps = []StepState{{Name: "a", Kind: CompensatableStep, Status: StepRunning, Held: true, Attempts: 1}}
	s.Paused = &Audit{By: "admin", At: s.StartedAt.Add(time.Second), Reason: "card provider down | 50% errors", Bulk: "b1x"}
	raw := string(encodeState(s))
	d, err := decodeState("f", "i", raw)
	if err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	if string(encodeState(d)) != raw || *d.Paused != *s.Paused || !d.Steps[0].Held {
		t.Errorf("round trip of %q: paused %+v, held %v", raw, d.Paused, d.Steps[0].Held)
	}
	for _, bad := range []string{raw[:strings.LastIndexByte(raw, '|')] + "|x", raw + "|more"} {
		if _, err := decodeState("f", "i", bad); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
}
