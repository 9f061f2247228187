// Package sagatest is choreo's test kit: an embedded NATS server with
// JetStream, helpers that wait for sagas and check their timelines, a
// recorder of handler calls, and a failure sweep that aborts every step of
// a flow in turn and checks the compensations.
//
// It ships the server the way net/http/httptest ships one: tests need no
// broker installed and clean up after themselves.
package sagatest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
)

// Server is an embedded nats-server with JetStream, listening on 127.0.0.1
// on a random port, storing in a temporary directory. It offers what a
// test of sagas needs: its URL, connections, a client, a restart and a
// shutdown.
type Server struct {
	ns   *server.Server
	opts server.Options
	tb   testing.TB
}

// ClientURL is the URL clients connect to ("nats://127.0.0.1:PORT").
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server and waits until it has stopped. NewServer has
// it called when the test ends; calling it again does nothing.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// ServerOption adjusts the embedded server's options.
type ServerOption func(*server.Options)

// SyncAlways makes the server fsync every write (sync_interval: always),
// as production brokers that must survive a machine crash do.
func SyncAlways() ServerOption { return func(o *server.Options) { o.SyncAlways = true } }

// StoreDir sets the JetStream store directory (default: a temporary one).
func StoreDir(dir string) ServerOption { return func(o *server.Options) { o.StoreDir = dir } }

// NewServer starts an embedded server and stops it when the test ends.
func NewServer(tb testing.TB, opts ...ServerOption) *Server {
	tb.Helper()
	o := server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(),
		NoLog: true, NoSigs: true, MaxPayload: 8 << 20,
	}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{opts: o, tb: tb}
	s.start()
	tb.Cleanup(func() { s.Shutdown() })
	return s
}

func (s *Server) start() {
	s.tb.Helper()
	ns, err := server.NewServer(&s.opts)
	if err != nil {
		s.tb.Fatalf("sagatest: new server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		s.tb.Fatalf("sagatest: server not ready")
	}
	s.ns = ns
	s.opts.Port = ns.Addr().(*net.TCPAddr).Port
}

// Restart stops the server and starts it again on the same port and store,
// as a broker restart does. Clients reconnect on their own.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Shutdown()
	s.start()
}

// Connect returns a connection and its JetStream context, closed when the
// test ends. The connection reconnects for ever.
func (s *Server) Connect() (*nats.Conn, jetstream.JetStream) {
	s.tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		// Bad-input tests send what the client cannot parse; the library
		// reports it, the default handler would print it.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		s.tb.Fatalf("sagatest: connect: %v", err)
	}
	s.tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.tb.Fatalf("sagatest: jetstream: %v", err)
	}
	return nc, js
}

// Client connects to the server and returns a saga client over it.
func (s *Server) Client(opts ...saga.Option) *saga.Client {
	s.tb.Helper()
	_, js := s.Connect()
	c, err := saga.New(context.Background(), js, opts...)
	if err != nil {
		s.tb.Fatalf("sagatest: saga client: %v", err)
	}
	return c
}

// Run runs r until the test ends (or stop is called) and waits until its
// consumers are receiving. stop ends the runner and waits for Run to return.
func Run(tb testing.TB, r *saga.Runner) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	select {
	case <-r.Ready():
	case err := <-errc:
		cancel()
		tb.Fatalf("sagatest: runner: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		tb.Fatalf("sagatest: runner not ready after 30s")
	}
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-errc; err != nil {
			tb.Errorf("sagatest: runner: %v", err)
		}
	}
	tb.Cleanup(stop)
	return stop
}

// Poll calls cond every few milliseconds until it returns true, and fails
// the test with the message msg() if that has not happened by timeout.
func Poll(tb testing.TB, timeout time.Duration, cond func() bool, msg func() string) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("sagatest: after %v: %s", timeout, msg())
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// AwaitStatus waits until the saga of flow f has one of the statuses and
// returns its state; the test fails if that has not happened within
// timeout, saying where the saga stands.
func AwaitStatus(tb testing.TB, c *saga.Client, f saga.FlowRef, id string, timeout time.Duration, want ...saga.Status) *saga.State {
	tb.Helper()
	var st *saga.State
	var err error
	Poll(tb, timeout, func() bool {
		st, err = c.Get(context.Background(), f, id)
		if err != nil {
			return false
		}
		for _, w := range want {
			if st.Status == w {
				return true
			}
		}
		return false
	}, func() string {
		if err != nil {
			return fmt.Sprintf("saga %s/%s: %v", f.Name(), id, err)
		}
		return fmt.Sprintf("saga %s/%s is %s, want %v (steps %+v)", f.Name(), id, st.Status, want, st.Steps)
	})
	return st
}
