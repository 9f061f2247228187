package shop_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// With a key file the shop's orders run as before and the saga log and
// dead letters hold no payload in clear: the card token of an order's
// input is nowhere in them, though the order.placed event (the order
// service's, in clear by design) has it. A bad key file stops start-up.
func TestShopEncryptsWithAKeyFile(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := os.WriteFile(keys, []byte("shop1 "+base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("shop1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := shop.Run(context.Background(), shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), KeyFile: bad}, nil)
	if !errors.Is(err, saga.ErrKeyRing) || !strings.Contains(err.Error(), "--key-file") || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("shop with a bad key file: %v", err)
	}

	sh := shoptest.RunShop(t, shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), KeyFile: keys})
	cust := shoptest.Register(t, sh.Base, "ada", "FR")
	code, res := placeMug(t, sh, cust)
	if code != 202 {
		t.Fatalf("order: %d %v", code, res)
	}
	id := res["id"].(string)
	ctx := context.Background()
	st := shoptest.AwaitEnded(ctx, sh.Deps, []string{id}, 60*time.Second, 100*time.Millisecond)[id]
	if st == nil || st.Status != saga.StatusCompleted {
		t.Fatalf("order %s: %+v, want completed", id, st)
	}
	// The admin's client has the key: it reads the input in clear.
	tl, err := sh.Deps.Sagas.Timeline(ctx, schemas.OrderFlow, id)
	if err != nil {
		t.Fatal(err)
	}
	var in schemas.OrderPlaced
	if err := json.Unmarshal(tl[0].Data, &in); err != nil || !strings.HasPrefix(in.Card.Token, "tok_") {
		t.Fatalf("the start's input with the key: %s, %v", tl[0].Data, err)
	}
	_, js := shoptest.Connect(t, sh.NATSURL, shoptest.Seed(t, sh.Credentials, shop.Admin))
	for stream, want := range map[string]bool{"CHOREO": false, "CHOREO_DLQ": false, "CHOREO_EVENTS": true} {
		if got := holds(t, js, stream, in.Card.Token); got != want {
			t.Errorf("stream %s holds the card token in clear: %v, want %v", stream, got, want)
		}
	}
}

// holds reports whether a message of the stream has needle in its payload
// or headers.
func holds(t *testing.T, js jetstream.JetStream, name, needle string) bool {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(m.Data), needle) {
			return true
		}
		for _, vs := range m.Header {
			if strings.Contains(strings.Join(vs, " "), needle) {
				return true
			}
		}
	}
	return false
}
