package engine

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestStateCodecTraceID(t *testing.T) {
	want := sampleState()
	want.TraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	raw := string(encodeState(want))
	if !strings.HasSuffix(raw, "|"+want.TraceID) {
		t.Fatalf("encoded state %q does not end with the trace id", raw)
	}
	got, err := decodeState(want.Flow, want.ID, raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	plain := sampleState()
	if strings.Count(string(encodeState(plain)), "|") != 11 {
		t.Errorf("a state without a trace id has a trace field: %s", encodeState(plain))
	}
	base := string(encodeState(plain))
	for _, bad := range []string{"", "xyz", "00000000000000000000000000000000", "4BF92F3577B34DA6A3CE929D0E0E4736", want.TraceID + "0", want.TraceID + "|!", want.TraceID + "|0", want.TraceID + "|"} {
		_, err := decodeState(want.Flow, want.ID, base+"|"+bad)
		var b badInput
		if !errors.As(err, &b) {
			t.Errorf("trace id %q: err = %v, want a bad input", bad, err)
		}
	}
}
