// Package embedded runs a nats-server with JetStream inside a binary, for
// the one-command runs. Tests use saga/sagatest instead.
package embedded

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config says where the server listens and stores.
type Config struct {
	Addr    string // host:port; port 0 picks a free one
	DataDir string // JetStream store; created if missing
	// SyncAlways fsyncs every write, so a machine crash loses nothing that
	// was acknowledged; it costs throughput.
	SyncAlways bool
	// Users, when set, are the only clients the server accepts, each with
	// its permissions (see saga.Permissions); no anonymous access.
	Users []*server.NkeyUser
}

// Start starts the server and waits until it accepts connections. Stop it
// with Shutdown.
func Start(c Config) (*server.Server, error) {
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return nil, fmt.Errorf("nats address %q: %v", c.Addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("nats address %q: bad port", c.Addr)
	}
	if p == 0 {
		p = -1
	}
	if c.DataDir == "" {
		return nil, fmt.Errorf("empty data directory")
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "choreo", Host: host, Port: p,
		JetStream: true, StoreDir: c.DataDir, SyncAlways: c.SyncAlways,
		NoLog: true, NoSigs: true, MaxPayload: 8 << 20,
		Nkeys: c.Users,
	})
	if err != nil {
		return nil, fmt.Errorf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server did not start on %s (is the port taken?)", c.Addr)
	}
	return s, nil
}
