package shop_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// The shop serves the operator console with the admin's identity; a busy
// port moves it to the next free one.
func TestShopServesTheConsole(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	sh := shoptest.RunShop(t, shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), ConsoleAddr: busy.Addr().String()})
	if sh.ConsoleAddr == "" || sh.ConsoleAddr == busy.Addr().String() {
		t.Fatalf("console at %q (the busy port is %s)", sh.ConsoleAddr, busy.Addr())
	}
	// Without this run's token, nothing: another user of the machine who
	// reaches the port must not act as the admin.
	if code, _ := shoptest.Call(t, "GET", "http://"+sh.ConsoleAddr+"/api/parked", nil); code != http.StatusUnauthorized {
		t.Errorf("console without its token: %d, want 401", code)
	}
	token := strings.TrimPrefix(sh.ConsoleURL, "http://"+sh.ConsoleAddr+"/?token=")
	if len(token) != 32 {
		t.Fatalf("console URL %q", sh.ConsoleURL)
	}
	resp, err := http.Get("http://" + sh.ConsoleAddr + "/api/flows?token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("console: flows %d", resp.StatusCode)
	}
	// The admin's identity may act: a retry of a missing saga is a 404 from
	// the library, not a permission error.
	req, _ := http.NewRequest("POST", "http://"+sh.ConsoleAddr+"/api/sagas/order/nope/retry", nil)
	req.Header.Set("X-Choreo-Console", "1")
	req.Header.Set("Authorization", "Bearer "+token)
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusNotFound {
		t.Errorf("retry of a missing saga: %d, want 404", r2.StatusCode)
	}
}

func TestShopRefusesARemoteConsole(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8081", ":8081", "example.com:8081", "nonsense"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := shop.Run(ctx, shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), ConsoleAddr: addr}, nil)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "--console-addr") || strings.Contains(err.Error(), "\n") {
			t.Errorf("console on %s: %v, want a one-line refusal", addr, err)
		}
	}
}
