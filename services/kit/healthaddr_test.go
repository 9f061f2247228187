package kit_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/kit"
)

// A service's /healthz (--health-addr) is 200 while its connection is up
// and 503 with the reason once it is not; a bad address is a one-line
// error before anything connects.
func TestHealthServer(t *testing.T) {
	if _, err := kit.ListenHealth("127.0.0.1:99999"); err == nil || !strings.HasPrefix(err.Error(), "--health-addr: ") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("bad address: %v, want a one-line --health-addr error", err)
	}
	srv := sagatest.NewServer(t)
	nc, _ := srv.Connect()
	h, err := kit.ListenHealth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.Serve(ctx, nc) }()
	url := "http://" + h.Addr().String() + "/healthz"
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get(); code != http.StatusOK {
		t.Fatalf("connected: %d %s, want 200", code, body)
	}
	nc.Close()
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "not connected") {
		t.Fatalf("closed: %d %s, want 503 not connected", code, body)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("still serving after ctx ended")
	}
}
