package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/choreo-go/choreo/services/kit"
)

// Service is the gateway.
type Service struct {
	d       kit.Deps
	addr    string
	rm      atomic.Pointer[ReadModel]
	hub     *hub
	ready   atomic.Bool
	addrCh  chan string
	rebuild sync.Mutex
	// applyMu orders the live view's applies with a rebuild's swap of the
	// read model; liveSeq is the stream sequence the live view applied last.
	applyMu sync.Mutex
	liveSeq uint64
	opts    options
	optErr  error
	wsConns atomic.Int64 // websockets open, at most opts.maxWebsockets
	health  *kit.Health
}

// New returns a gateway that will listen on addr; Run starts it, or
// returns ErrInvalidOption if an option is out of range.
func New(d kit.Deps, addr string, opts ...Option) *Service {
	s := &Service{d: d, addr: addr, hub: newHub(), addrCh: make(chan string, 1), opts: defaultOptions(),
		health: kit.NewHealth(d.JS, kit.Streams, kit.Buckets)}
	for _, o := range opts {
		if err := o(&s.opts); err != nil && s.optErr == nil {
			s.optErr = err
		}
	}
	s.rm.Store(NewReadModel())
	return s
}

// Addr returns the address the gateway listens on, once it does.
func (s *Service) Addr() <-chan string { return s.addrCh }

// Run projects events, follows the sagas and serves HTTP until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if s.optErr != nil {
		return s.optErr
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("http address %s: %w", s.addr, err)
	}
	s.addrCh <- ln.Addr().String()
	if !s.opts.tokenKeySet {
		s.d.Logger.Warn("gateway: no customer token key given: customers' tokens end with this process (gateway.WithCustomerTokens)")
	}
	// A hijacked connection (the websocket) drops these deadlines: they
	// bound the upgrade request, not the socket's life.
	t := s.opts.timeouts
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read,
		WriteTimeout: t.Write, IdleTimeout: t.Idle}
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); errc <- s.project(ctx) }()
	go func() { defer wg.Done(); errc <- s.follow(ctx) }()
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.hub.close()
	_ = srv.Shutdown(sctx)
	wg.Wait()
	return runErr
}
