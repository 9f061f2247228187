package saga_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// testRing, with CHOREO_TEST_ENCRYPT=1, runs the tests built on newEnv
// (the forgery checks among them) with every payload sealed.
var testRing = func() *saga.KeyRing {
	if os.Getenv("CHOREO_TEST_ENCRYPT") != "1" {
		return nil
	}
	return mustRing(nil, "test")
}()

// mustRing makes a ring of fresh keys with the given ids, the first one
// sealing.
func mustRing(t testing.TB, ids ...string) *saga.KeyRing {
	var keys []saga.Key
	for _, id := range ids {
		keys = append(keys, saga.Key{ID: id, Secret: bytes.Repeat([]byte(id[:1]), 32)})
	}
	r, err := saga.NewKeyRing(keys...)
	if err != nil {
		if t == nil {
			panic(err)
		}
		t.Fatal(err)
	}
	return r
}

func TestKeyRingFile(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	short := base64.StdEncoding.EncodeToString([]byte("short"))
	for _, tc := range []struct {
		name, text, want string
	}{
		{"two keys", "# newest first\nk2 " + key + "\n\nk1 " + key + "\n", ""},
		{"empty", "# nothing\n", "no key"},
		{"one field", "k1\n", "line 1"},
		{"not base64", "k1 !!!\n", "line 1: key \"k1\" is not standard base64"},
		{"wrong size", "k1 " + short + "\n", "5 bytes, want 16, 24 or 32"},
		{"bad id", "k.1 " + key + "\n", "key id \"k.1\""},
		{"repeated id", "k1 " + key + "\nk1 " + key + "\n", "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := saga.LoadKeyRing(path)
			if tc.want == "" {
				if err != nil || strings.Join(r.IDs(), ",") != "k2,k1" {
					t.Fatalf("LoadKeyRing = %v, %v; want k2,k1", r, err)
				}
				return
			}
			if !errors.Is(err, saga.ErrKeyRing) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("LoadKeyRing: %v; want one line naming %s and saying %q", err, path, tc.want)
			}
			// New refuses the file as an invalid option, with the same line.
			_, js := sagatest.NewServer(t).Connect()
			if _, err := saga.New(context.Background(), js, saga.WithKeyFile(path)); !errors.Is(err, saga.ErrInvalidOption) || !errors.Is(err, saga.ErrKeyRing) {
				t.Fatalf("New with a bad key file: %v", err)
			}
		})
	}
}

// The secret flow: vault (compensatable) -> charge (compensatable). Every
// payload and error of it carries the marker.
type (
	secretIn struct {
		Card string
	}
	secretOut struct {
		Token string
	}
)

const marker = "PLAINTEXT-MARKER-4711"

type secretFlow struct {
	flow   *saga.Flow[secretIn]
	vault  *saga.Step[secretIn, secretOut]
	charge *saga.Step[secretOut, secretOut]

	mu   sync.Mutex
	seen []string // what the handlers were given, as text
}

func newSecretFlow(t *testing.T, name string) *secretFlow {
	t.Helper()
	s := &secretFlow{
		vault:  saga.NewStep[secretIn, secretOut]("vault", saga.WithCompensationRetry(saga.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond})),
		charge: saga.NewStep[secretOut, secretOut]("charge"),
	}
	f, err := saga.Define[secretIn](name, 1, s.vault, s.charge)
	if err != nil {
		t.Fatal(err)
	}
	s.flow = f
	return s
}

func (s *secretFlow) saw(v any) {
	s.mu.Lock()
	s.seen = append(s.seen, fmt.Sprint(v))
	s.mu.Unlock()
}

// runner runs the flow on c: saga "declined" fails its charge with the
// marker in the error, and its vault's first compensation fails with it
// too; an input card "refuse" is refused by the validator.
func (s *secretFlow) runner(t *testing.T, c *saga.Client) (stop func()) {
	t.Helper()
	r, err := saga.NewRunner(c, saga.WithValidator(func(_ string, data []byte) error {
		if bytes.Contains(data, []byte("refuse")) {
			return errors.New("refused")
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	var undos sync.Map
	err = errors.Join(
		saga.Handle(r, s.vault, func(ctx context.Context, in secretIn) (secretOut, error) {
			s.saw(in)
			return secretOut{Token: "tok-" + in.Card}, nil
		}, func(ctx context.Context, in secretIn, out secretOut) error {
			s.saw(out)
			info, _ := saga.InfoFrom(ctx)
			if _, again := undos.LoadOrStore(info.ID, true); !again {
				return fmt.Errorf("vault %s busy", out.Token)
			}
			return nil
		}),
		saga.Handle(r, s.charge, func(ctx context.Context, in secretOut) (secretOut, error) {
			s.saw(in)
			if info, _ := saga.InfoFrom(ctx); info.ID == "declined" {
				return secretOut{}, saga.Abort(fmt.Errorf("card %s declined", in.Token))
			}
			return secretOut{Token: "charged-" + in.Token}, nil
		}, nil),
	)
	if err != nil {
		t.Fatal(err)
	}
	return sagatest.Run(t, r)
}

// run starts the three sagas and waits for their ends.
func (s *secretFlow) run(t *testing.T, c *saga.Client) {
	t.Helper()
	ctx := context.Background()
	for id, card := range map[string]string{"ok": marker, "declined": marker, "refused": "refuse-" + marker} {
		if err := saga.Start(ctx, c, s.flow, id, secretIn{Card: card}); err != nil {
			t.Fatal(err)
		}
	}
	sagatest.AwaitStatus(t, c, s.flow, "ok", 30*time.Second, saga.StatusCompleted)
	sagatest.AwaitStatus(t, c, s.flow, "declined", 30*time.Second, saga.StatusCompensated)
	sagatest.AwaitStatus(t, c, s.flow, "refused", 30*time.Second, saga.StatusCompensated)
}

// scanFor reads every message of every stream on the server (the saga
// log, timers, dead letters, events, and every key-value bucket and object
// store, which are streams too) and returns where the marker is found, in
// a subject, a header or a payload.
func scanFor(t *testing.T, srv *sagatest.Server, needle string) []string {
	t.Helper()
	ctx := context.Background()
	_, js := srv.Connect()
	var found []string
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			text := m.Subject + "\n" + string(m.Data)
			for k, vs := range m.Header {
				text += "\n" + k + ": " + strings.Join(vs, ",")
			}
			if strings.Contains(text, needle) {
				found = append(found, fmt.Sprintf("%s #%d %s", name, seq, m.Subject))
			}
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return found
}

// TestEncryptionLeavesNoPlaintext runs sagas whose inputs, results and
// errors (an action's, a compensation's, a validator's refusal, with the
// refused input dead-lettered) carry a marker, then reads every message of
// every stream and bucket: with a key ring the marker is nowhere, without
// one it is there (so the scan can fail).
func TestEncryptionLeavesNoPlaintext(t *testing.T) {
	for _, encrypt := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypt=%v", encrypt), func(t *testing.T) {
			srv := sagatest.NewServer(t)
			var opts []saga.Option
			if encrypt {
				opts = append(opts, saga.WithKeyRing(mustRing(t, "k1")))
			}
			c := srv.Client(opts...)
			s := newSecretFlow(t, "secret")
			stop := s.runner(t, c)
			s.run(t, c)
			stop()

			// Handlers saw plain values.
			s.mu.Lock()
			seen := strings.Join(s.seen, " ")
			s.mu.Unlock()
			for _, want := range []string{"{" + marker + "}", "{tok-" + marker + "}"} {
				if !strings.Contains(seen, want) {
					t.Errorf("handlers saw %s; want %s among it", seen, want)
				}
			}
			// A client with the key reads the errors in clear.
			st, err := c.Get(context.Background(), s.flow, "declined")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(st.Steps[1].Error, "card tok-"+marker+" declined") || !strings.Contains(st.Reason, marker) {
				t.Errorf("the owner's Get: reason %q, charge's error %q; want the marker in both", st.Reason, st.Steps[1].Error)
			}

			found := scanFor(t, srv, marker)
			if !encrypt {
				if len(found) == 0 {
					t.Fatal("without encryption the marker is nowhere: the scan cannot tell")
				}
				return
			}
			if len(found) > 0 {
				t.Fatalf("the marker is stored in clear with encryption on:\n%s", strings.Join(found, "\n"))
			}

			// A client without the key reads everything, sealed parts as
			// "encrypted", and fails nowhere.
			blind := srv.Client()
			st, err = blind.Get(context.Background(), s.flow, "declined")
			if err != nil {
				t.Fatal(err)
			}
			if st.Steps[1].Error != "[encrypted]" || !strings.Contains(st.Reason, "[encrypted]") || strings.Contains(st.Reason, marker) {
				t.Errorf("without the key: reason %q, charge's error %q; want [encrypted]", st.Reason, st.Steps[1].Error)
			}
			tl, err := blind.Timeline(context.Background(), s.flow, "ok")
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range tl {
				if e.Phase == saga.PhaseStart || e.Phase == saga.PhaseDone {
					if !e.Encrypted || e.Data != nil {
						t.Errorf("without the key, %s: encrypted %v, data %s", e, e.Encrypted, e.Data)
					}
				}
			}
			tl, err = c.Timeline(context.Background(), s.flow, "ok")
			if err != nil {
				t.Fatal(err)
			}
			if e := tl[0]; e.Encrypted || !strings.Contains(string(e.Data), marker) {
				t.Errorf("with the key, %s: encrypted %v, data %s", e, e.Encrypted, e.Data)
			}
			// The dead letter of the refused input: sealed, opened with the key.
			dl, err := srv.Ops().DeadLetters(context.Background(), s.flow.Name())
			if err != nil || len(dl) != 1 || !dl[0].Encrypted || dl[0].Data != nil {
				t.Fatalf("dead letters without the key: %+v, %v; want one, encrypted", dl, err)
			}
			dl, err = srv.Ops(opts...).DeadLetters(context.Background(), s.flow.Name())
			if err != nil || len(dl) != 1 || dl[0].Encrypted || !strings.Contains(string(dl[0].Data), "refuse-"+marker) {
				t.Fatalf("dead letters with the key: %+v, %v; want the input in clear", dl, err)
			}
		})
	}
}

// TestKeyRotation writes with key a, then rotates to b (a kept to read):
// sagas started under a finish, new writes use b, and a ring without a
// reads a's payloads as encrypted.
func TestKeyRotation(t *testing.T) {
	srv := sagatest.NewServer(t)
	ctx := context.Background()
	s := newSecretFlow(t, "rotate")
	old := srv.Client(saga.WithKeyRing(mustRing(t, "a")))
	// Started under a, with no runner yet: it waits for one.
	if err := saga.Start(ctx, old, s.flow, "before", secretIn{Card: marker}); err != nil {
		t.Fatal(err)
	}
	c := srv.Client(saga.WithKeyRing(mustRing(t, "b", "a")))
	s.runner(t, c)
	if err := saga.Start(ctx, c, s.flow, "after", secretIn{Card: marker}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"before", "after"} {
		sagatest.AwaitStatus(t, c, s.flow, id, 30*time.Second, saga.StatusCompleted)
	}
	_, js := srv.Connect()
	stream, err := js.Stream(ctx, wire.Stream)
	if err != nil {
		t.Fatal(err)
	}
	keyOn := func(id, step, phase string) string {
		m, err := stream.GetLastMsgForSubject(ctx, wire.LogSubject(s.flow.Name(), id, 1, step, phase))
		if err != nil {
			t.Fatal(err)
		}
		return m.Header.Get(wire.Key)
	}
	for _, tc := range []struct{ id, step, phase, want string }{
		{"before", wire.SagaStep, wire.PhaseStart, "a"},
		{"before", "vault", wire.PhaseDone, "b"},
		{"after", wire.SagaStep, wire.PhaseStart, "b"},
		{"after", "charge", wire.PhaseDone, "b"},
	} {
		if got := keyOn(tc.id, tc.step, tc.phase); got != tc.want {
			t.Errorf("%s %s:%s sealed with key %q, want %q", tc.id, tc.step, tc.phase, got, tc.want)
		}
	}
	// Once a is dropped, what it sealed reads as encrypted, the rest in clear.
	tl, err := srv.Client(saga.WithKeyRing(mustRing(t, "b"))).Timeline(ctx, s.flow, "before")
	if err != nil {
		t.Fatal(err)
	}
	if !tl[0].Encrypted || tl[len(tl)-1].Encrypted || !strings.Contains(string(tl[len(tl)-1].Data), marker) {
		t.Errorf("ring without a: start encrypted %v, last %s encrypted %v data %s", tl[0].Encrypted, tl[len(tl)-1], tl[len(tl)-1].Encrypted, tl[len(tl)-1].Data)
	}
}

// A runner without the key does not fail a saga whose input it cannot
// open: it says why and leaves the delivery for one that has the key.
func TestRunnerWithoutTheKeyWaits(t *testing.T) {
	srv := sagatest.NewServer(t)
	ctx := context.Background()
	s := newSecretFlow(t, "keyless")
	keyed := srv.Client(saga.WithKeyRing(mustRing(t, "k1")))
	if err := saga.Start(ctx, keyed, s.flow, "w1", secretIn{Card: marker}); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	stop := s.runner(t, srv.Client(saga.WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))))
	sagatest.Poll(t, 20*time.Second, func() bool { return strings.Contains(logs.String(), "no key ring is given") },
		func() string { return "the keyless runner did not say why it waits: " + logs.String() })
	stop()
	st, err := keyed.Get(ctx, s.flow, "w1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != saga.StatusRunning || st.Steps[0].Status == saga.StepFailed {
		t.Fatalf("after the keyless runner: %s, vault %s; want it running, not failed", st.Status, st.Steps[0].Status)
	}
	s.runner(t, keyed)
	sagatest.AwaitStatus(t, keyed, s.flow, "w1", 30*time.Second, saga.StatusCompleted)
}
