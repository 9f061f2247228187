package engine

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/internal/wire"
)

func testRing(t *testing.T, ids ...string) *KeyRing {
	t.Helper()
	var keys []Key
	for _, id := range ids {
		keys = append(keys, Key{ID: id, Secret: bytes.Repeat([]byte(id[:1]), 16)})
	}
	r, err := NewKeyRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSealedDataIsBoundToItsSubject(t *testing.T) {
	r := testRing(t, "k")
	one := wire.LogSubject("f", "one", 1, wire.SagaStep, wire.PhaseStart)
	two := wire.LogSubject("f", "two", 1, wire.SagaStep, wire.PhaseStart)
	key, sealed := sealData(r, one, []byte(`{"card":"4111"}`))
	if key != "k" || bytes.Contains(sealed, []byte("4111")) {
		t.Fatalf("sealData: key %q, %q", key, sealed)
	}
	h := nats.Header{wire.Key: {key}}
	if got, err := openData(r, h, one, sealed); err != nil || string(got) != `{"card":"4111"}` {
		t.Fatalf("open on its subject: %s, %v", got, err)
	}
	for name, tc := range map[string]struct {
		ring    *KeyRing
		subject string
		data    []byte
		want    error
	}{
		"another saga":  {r, two, sealed, ErrUnsealable},
		"another phase": {r, wire.LogSubject("f", "one", 1, "vault", wire.PhaseDone), sealed, ErrUnsealable},
		"altered":       {r, one, append(bytes.Clone(sealed[:len(sealed)-1]), sealed[len(sealed)-1]^1), ErrUnsealable},
		"truncated":     {r, one, sealed[:10], ErrUnsealable},
		"unknown key":   {testRing(t, "other"), one, sealed, ErrNoKey},
		"no ring":       {nil, one, sealed, ErrNoKey},
	} {
		if _, err := openData(tc.ring, h, tc.subject, tc.data); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// Two seals of one payload differ (a random nonce each).
	if _, again := sealData(r, one, []byte(`{"card":"4111"}`)); bytes.Equal(again, sealed) {
		t.Error("two seals are equal")
	}
	// Without a ring, or for an empty payload, nothing is sealed.
	if key, d := sealData(nil, one, []byte("x")); key != "" || string(d) != "x" {
		t.Errorf("sealData without a ring: %q %q", key, d)
	}
	if key, _ := sealData(r, one, nil); key != "" {
		t.Errorf("sealData of nothing: key %q", key)
	}
}

func TestSealedTextInsideText(t *testing.T) {
	r := testRing(t, "k2", "k1")
	tok := sealText(r, "f", "s1", "card 4111 declined")
	text := "step charge: retries exhausted after 3 attempts: " + tok + " (late)"
	if strings.Contains(text, "4111") {
		t.Fatalf("sealed text shows the plain: %s", text)
	}
	for name, tc := range map[string]struct {
		ring     *KeyRing
		flow, id string
		want     string
	}{
		"with the key":  {r, "f", "s1", "step charge: retries exhausted after 3 attempts: card 4111 declined (late)"},
		"older ring":    {testRing(t, "k2"), "f", "s1", "step charge: retries exhausted after 3 attempts: card 4111 declined (late)"},
		"without a key": {nil, "f", "s1", "step charge: retries exhausted after 3 attempts: [encrypted] (late)"},
		"another saga":  {r, "f", "s2", "step charge: retries exhausted after 3 attempts: [encrypted] (late)"},
	} {
		if got := openText(tc.ring, tc.flow, tc.id, text); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
	if got := openText(r, "f", "s1", "encrypted: nothing sealed"); got != "encrypted: nothing sealed" {
		t.Errorf("plain text with the prefix: %q", got)
	}
	// A state's texts survive the codec, and the check copies them: the
	// state opens after a round trip.
	st := &State{Flow: "f", ID: "s1", Version: 1, Events: 2, StartedAt: time.Now().UTC().Truncate(time.Microsecond), Status: StatusCompensating, Reason: "step charge: " + tok,
		Steps: []StepState{{Name: "charge", Kind: CompensatableStep, Status: StepFailed, Attempts: 1, Error: tok}}}
	back, err := decodeState("f", "s1", string(encodeState(st)))
	if err != nil {
		t.Fatal(err)
	}
	if o := openState(r, back); o.Steps[0].Error != "card 4111 declined" || o.Reason != "step charge: card 4111 declined" || back.Steps[0].Error != tok {
		t.Errorf("opened state: %q / %q; the read one kept %q", o.Reason, o.Steps[0].Error, back.Steps[0].Error)
	}
}

// BenchmarkSealOpen is what encryption adds to a hop: its payload sealed
// when appended and opened when the next step reads it.
func BenchmarkSealOpen(b *testing.B) {
	r, err := NewKeyRing(Key{ID: "k", Secret: bytes.Repeat([]byte("k"), 32)})
	if err != nil {
		b.Fatal(err)
	}
	subject := wire.LogSubject("order", "ord-123456", 1, "charge", wire.PhaseDone)
	for _, size := range []int{200, 64 << 10} {
		plain := bytes.Repeat([]byte("x"), size)
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			h := nats.Header{}
			for b.Loop() {
				key, sealed := sealData(r, subject, plain)
				h[wire.Key] = []string{key}
				if _, err := openData(r, h, subject, sealed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
