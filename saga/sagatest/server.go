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
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/ops"
)

// Server is an embedded nats-server with JetStream, listening on 127.0.0.1
// on a random port, storing in a temporary directory. It offers what a
// test of sagas needs: its URL, connections, a client, a restart and a
// shutdown.
type Server struct {
	ns   *server.Server
	opts server.Options
	tb   testing.TB // nil for a server from StartServer

	mu      sync.Mutex
	cleanup []func()      // without tb: what Shutdown closes
	clock   *Clock        // set by Clock: Client and Ops use it
	ring    *saga.KeyRing // set by SetKeyRing: Client and Ops use it
}

// SetKeyRing makes every Client and Ops of the server made from now on
// seal and open payloads with r (saga.WithKeyRing): to run a test with
// encryption on without changing how it makes its clients.
func (s *Server) SetKeyRing(r *saga.KeyRing) {
	s.mu.Lock()
	s.ring = r
	s.mu.Unlock()
}

// ClientURL is the URL clients connect to ("nats://127.0.0.1:PORT").
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server and waits until it has stopped. NewServer has
// it called when the test ends; a server from StartServer also closes the
// connections it made and removes its store. Calling it again does nothing.
func (s *Server) Shutdown() {
	s.mu.Lock()
	fns := s.cleanup
	s.cleanup = nil
	s.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// StartServer starts an embedded server outside a test (in an example or a
// small program); the caller stops it with Shutdown. In a test, use
// NewServer.
func StartServer(opts ...ServerOption) (*Server, error) {
	dir, err := os.MkdirTemp("", "sagatest-")
	if err != nil {
		return nil, err
	}
	s := &Server{opts: defaultOptions(dir)}
	for _, opt := range opts {
		opt(&s.opts)
	}
	if err := s.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.onShutdown(func() { os.RemoveAll(dir) })
	return s, nil
}

func defaultOptions(dir string) server.Options {
	return server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true, MaxPayload: 8 << 20,
	}
}

// fatal fails the test, or panics outside one.
func (s *Server) fatal(format string, args ...any) {
	if s.tb != nil {
		s.tb.Helper()
		s.tb.Fatalf(format, args...)
	}
	panic(fmt.Sprintf(format, args...))
}

// onShutdown runs fn when the test ends, or at Shutdown outside a test.
func (s *Server) onShutdown(fn func()) {
	if s.tb != nil {
		s.tb.Cleanup(fn)
		return
	}
	s.mu.Lock()
	s.cleanup = append(s.cleanup, fn)
	s.mu.Unlock()
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
	o := defaultOptions(tb.TempDir())
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{opts: o, tb: tb}
	if err := s.start(); err != nil {
		tb.Fatalf("sagatest: %v", err)
	}
	tb.Cleanup(func() { s.Shutdown() })
	return s
}

func (s *Server) start() error {
	ns, err := server.NewServer(&s.opts)
	if err != nil {
		return fmt.Errorf("new server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return fmt.Errorf("server not ready after 10s")
	}
	s.ns = ns
	s.opts.Port = ns.Addr().(*net.TCPAddr).Port
	return nil
}

// Restart stops the server and starts it again on the same port and store,
// as a broker restart does. Clients reconnect on their own.
func (s *Server) Restart() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	if err := s.start(); err != nil {
		s.fatal("sagatest: restart: %v", err)
	}
}

// Connect returns a connection and its JetStream context, closed when the
// test ends. The connection reconnects for ever.
func (s *Server) Connect() (*nats.Conn, jetstream.JetStream) {
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		// Bad-input tests send what the client cannot parse; the library
		// reports it, the default handler would print it.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		s.fatal("sagatest: connect: %v", err)
	}
	s.onShutdown(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.fatal("sagatest: jetstream: %v", err)
	}
	return nc, js
}

// Client connects to the server and returns a saga client over it.
func (s *Server) Client(opts ...saga.Option) *saga.Client {
	_, js := s.Connect()
	opts = s.withClock(opts)
	c, err := saga.New(context.Background(), js, opts...)
	if err != nil {
		s.fatal("sagatest: saga client: %v", err)
	}
	return c
}

// Ops connects to the server and returns an operator's client over it
// (package ops: versions, cancels, dead letters, diagnosis), after making
// sure choreo's streams exist.
func (s *Server) Ops(opts ...saga.Option) *ops.Client {
	_, js := s.Connect()
	opts = s.withClock(opts)
	if err := access.Provision(context.Background(), js, opts...); err != nil {
		s.fatal("sagatest: provision: %v", err)
	}
	c, err := ops.Open(context.Background(), js, opts...)
	if err != nil {
		s.fatal("sagatest: ops client: %v", err)
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
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := Wait(ctx, c, f, id, want...)
	if err != nil {
		tb.Fatalf("sagatest: after %v: %v", timeout, err)
	}
	return st
}

// Wait polls until the saga of flow f has one of the statuses (any
// terminal one when none is given) and returns its state. When ctx ends
// first, the error says where the saga stands.
func Wait(ctx context.Context, c *saga.Client, f saga.FlowRef, id string, want ...saga.Status) (*saga.State, error) {
	wait := time.Millisecond
	for {
		st, err := c.Get(ctx, f, id)
		if err == nil && ((len(want) == 0 && st.Status.Terminal()) || slices.Contains(want, st.Status)) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return nil, fmt.Errorf("saga %s/%s: %w", f.Name(), id, err)
			}
			return nil, fmt.Errorf("saga %s/%s is %s, want %s (%s)", f.Name(), id, st.Status, wanted(want), stepsLine(st))
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// wanted says what Wait waited for.
func wanted(want []saga.Status) string {
	if len(want) == 0 {
		return "it ended (completed, compensated or compensation_failed)"
	}
	out := ""
	for i, w := range want {
		if i > 0 {
			out += " or "
		}
		out += string(w)
	}
	return out
}

// stepsLine says where each step of a saga stands, with its errors, in a
// line: "steps: book completed, hotel failed (sweep: hotel aborts)".
func stepsLine(st *saga.State) string {
	out := "steps:"
	for i, ss := range st.Steps {
		if i > 0 {
			out += ","
		}
		out += " " + ss.Name + " " + string(ss.Status)
		var notes []string
		if ss.Error != "" {
			notes = append(notes, ss.Error)
		}
		if ss.CompensationError != "" {
			notes = append(notes, "compensation: "+ss.CompensationError)
		}
		if ss.Waiting != "" {
			notes = append(notes, ss.Waiting)
		}
		if len(notes) > 0 {
			out += " (" + strings.Join(notes, "; ") + ")"
		}
	}
	return out
}
