package saga

import (
	"reflect"
	"testing"
	"time"
)

func sampleState() *State {
	t0 := time.Date(2026, 11, 22, 3, 4, 5, 6000, time.UTC)
	return &State{
		Flow: "order", ID: "o-1", Version: 3, Status: StatusCompensating, Events: 7, Epoch: 1,
		StartedAt: t0, UpdatedAt: t0.Add(time.Second), Deadline: t0.Add(time.Minute),
		Reason: "step pay: card declined | really; a,b % 100",
		Steps: []StepState{
			{Name: "pay", Position: 0, Kind: Compensatable, Status: StepCompleted, Attempts: 2, Trigger: 1, Done: 2, StartedAt: t0, EndedAt: t0.Add(time.Millisecond)},
			{Name: "ship", Position: 1, Kind: PivotStep, Status: StepFailed, Attempts: 1, Trigger: 2, Error: "no, sir; \"never\" |", StartedAt: t0},
			{Name: "mail", Position: 2, Kind: RetriableStep, Status: StepPending},
		},
	}
}

func TestStateCodecRoundTrip(t *testing.T) {
	want := sampleState()
	got, err := decodeState(string(encodeState(want)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got  %+v\n want %+v", got, want)
	}
	empty := &State{Flow: "f", ID: "i", Version: 1, Status: StatusRunning, Events: 1, StartedAt: time.UnixMicro(5).UTC()}
	if got, err := decodeState(string(encodeState(empty))); err != nil || !reflect.DeepEqual(got, empty) {
		t.Errorf("empty round trip: %+v %v", got, err)
	}
}

func TestStateCodecRejects(t *testing.T) {
	for _, raw := range []string{"", "{}", "c2|a", "c1|f|i|1|running|1|0|0||||", "c2|f|i|x|running|1|0|0||||",
		"c2|f|i|1|sleeping|1|0|0||||", "c2|f|i|1|running|1|0|0||||%zz|", "c2|f|i|1|running|1|0|0|||||a,0",
		"c2|f|i|1|running|1|0|0|||||a,0,w,p,0,0,0,0,,,,", "c2|f|i|1|running|1|0|!!||||", "c2|f|i|1|running|1|0|0|zz!|||"} {
		if _, err := decodeState(raw); err == nil {
			t.Errorf("decodeState(%q) accepted", raw)
		}
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add(string(encodeState(sampleState())))
	f.Add("c2|f|i|1|running|1|0|0||||")
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := decodeState(raw)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes the same.
		again, err := decodeState(string(encodeState(s)))
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("re-decode of %q: %+v %v", raw, again, err)
		}
	})
}
