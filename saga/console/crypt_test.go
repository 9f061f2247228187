package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/console"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// A console whose clients have the key ring shows what choreo stored
// encrypted in clear; one without it says "encrypted" and fails nowhere.
func TestConsoleEncryptedPayloads(t *testing.T) {
	s := sagatest.NewServer(t)
	ring, err := saga.NewKeyRing(saga.Key{ID: "k1", Secret: bytes.Repeat([]byte("k"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Client(saga.WithKeyRing(ring))
	step := saga.NewStep[Order, Charged]("charge")
	flow := saga.MustDefine[Order]("sealed", 1, step)
	r, err := saga.NewRunner(c, saga.WithValidator(func(_ string, data []byte) error {
		if bytes.Contains(data, []byte("refuse")) {
			return errors.New("refused")
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, step, func(_ context.Context, o Order) (Charged, error) {
		return Charged{}, saga.Abort(errors.New("card of " + o.ID + " declined"))
	}, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	for _, id := range []string{"declined", "refuse"} {
		if err := saga.Start(context.Background(), c, flow, id, Order{ID: "secret-" + id}); err != nil {
			t.Fatal(err)
		}
		sagatest.AwaitStatus(t, c, flow, id, 20*time.Second, saga.StatusCompensated)
	}
	get := func(h http.Handler, path string, v any) string {
		t.Helper()
		srv := httptest.NewServer(h)
		defer srv.Close()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, v) != nil {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		return string(body)
	}
	type page struct {
		DeadLetters []struct{ Preview string } `json:"dead_letters"`
	}
	for _, tc := range []struct {
		name          string
		opts          []saga.Option
		preview, note string
	}{
		{"with the key", []saga.Option{saga.WithKeyRing(ring)}, "secret-refuse", "card of secret-declined declined"},
		{"without it", nil, "encrypted", "[encrypted]"},
	} {
		h := console.Handler(s.Client(tc.opts...), s.Ops(tc.opts...))
		var dl page
		get(h, "/api/deadletters", &dl)
		if len(dl.DeadLetters) != 1 || !strings.Contains(dl.DeadLetters[0].Preview, tc.preview) {
			t.Errorf("%s: dead letters %+v, want one whose preview says %q", tc.name, dl, tc.preview)
		}
		var sg map[string]any
		body := get(h, "/api/sagas/sealed/declined", &sg)
		if !strings.Contains(body, tc.note) || (tc.opts == nil && strings.Contains(body, "secret-")) {
			t.Errorf("%s: saga page %s, want %q in it", tc.name, body, tc.note)
		}
	}
}
