package shoptest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// StartServer starts a nats-server with opts, waits until it takes
// connections, and shuts it down when the test ends. logger, when not
// nil, gets its log (opts.NoLog is then ignored).
func StartServer(t testing.TB, opts *server.Options, logger server.Logger) *server.Server {
	t.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	if logger != nil {
		srv.SetLogger(logger, true, false)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatalf("nats-server %s not ready", opts.ServerName)
	}
	return srv
}

// FreeAddr is a free 127.0.0.1:port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// FreePort is a free port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(FreeAddr(t))
	n, _ := net.LookupPort("tcp", port)
	return n
}
