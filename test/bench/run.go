package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Payload is the input and output of every step.
type Payload struct {
	Order string `json:"order"`
	Hop   int    `json:"hop"`
	Blob  string `json:"blob,omitempty"`
}

// payloadGen makes the input of saga id.
type payloadGen func(id string) Payload

var blob64k = strings.Repeat("0123456789abcdef", 64<<10/16)

var payloads = map[string]payloadGen{
	"small": func(id string) Payload { return Payload{Order: id} },
	"64KiB": func(id string) Payload { return Payload{Order: id, Blob: blob64k} },
}

func payloadSize(name string) int { return len(mustJSON(payloads[name]("1"))) }

// config is one measurement.
type config struct {
	kind       string // choreo or raw
	steps      int
	inflight   int
	payload    string // a key of payloads
	syncAlways bool
	// oneRunner serves every step from one runner and client (the shape
	// no service deploys); by default each step has the runner, client and
	// connection of its own service, as in the shop.
	oneRunner bool
	// cluster runs on three embedded servers with every stream replicated
	// three times, choreo's services connected to the nodes in turn.
	cluster bool
}

func (c config) with(kind string) config { c.kind = kind; return c }

func (c config) String() string {
	return fmt.Sprintf("%s steps=%d in_flight=%d payload=%s sync_always=%v one_runner=%v cluster=%v", c.kind, c.steps, c.inflight, c.payload, c.syncAlways, c.oneRunner, c.cluster)
}

type result struct {
	n        int
	steps    int
	rate     float64 // sagas per second
	cpu      time.Duration
	p50, p99 time.Duration
}

func (r result) String() string {
	cpuPerHop := float64(r.cpu.Microseconds()) / float64(r.n*r.steps)
	return fmt.Sprintf("sagas=%-6d sagas/s=%-6.0f hops/s=%-6.0f cpu/hop=%-9s p50=%-9s p99=%-9s",
		r.n, r.rate, r.rate*float64(r.steps), fmt.Sprintf("%.1fµs", cpuPerHop),
		r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
}

// system is one side of the comparison: start a saga, be told when done.
type system interface {
	start(ctx context.Context, id string) error
}

// env is an embedded server (or three in a cluster) with file storage in
// temporary directories, listening on 127.0.0.1 only, and a client of it.
type env struct {
	js    jetstream.JetStream
	urls  []string
	mu    sync.Mutex
	conns []*nats.Conn
	next  int
	stop  func()
}

// connect opens another connection, to the servers in turn: a service's
// own.
func (e *env) connect() (jetstream.JetStream, error) {
	e.mu.Lock()
	url := e.urls[e.next%len(e.urls)]
	e.next++
	e.mu.Unlock()
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.conns = append(e.conns, nc)
	e.mu.Unlock()
	return jetstream.New(nc)
}

func startEnv(syncAlways bool) (*env, error) { return startServers(1, syncAlways) }

// startServers starts n servers (a cluster when n > 1) and connects to
// the first.
func startServers(n int, syncAlways bool) (*env, error) {
	var servers []*server.Server
	var dirs []string
	stopServers := func() {
		for _, ns := range servers {
			ns.Shutdown()
			ns.WaitForShutdown()
		}
		for _, d := range dirs {
			os.RemoveAll(d)
		}
	}
	var routes []string
	var ports []int
	for range n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i := range n {
		dir, err := os.MkdirTemp("", "choreo-bench-")
		if err != nil {
			stopServers()
			return nil, err
		}
		dirs = append(dirs, dir)
		o := &server.Options{
			ServerName: fmt.Sprintf("b%d", i), Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
			SyncAlways: syncAlways, NoLog: true, NoSigs: true,
		}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: ports[i]}
			o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		}
		ns, err := server.NewServer(o)
		if err != nil {
			stopServers()
			return nil, err
		}
		servers = append(servers, ns)
		go ns.Start()
	}
	var urls []string
	for _, ns := range servers {
		if !ns.ReadyForConnections(20 * time.Second) {
			stopServers()
			return nil, errors.New("server not ready")
		}
		urls = append(urls, ns.ClientURL())
	}
	e := &env{urls: urls}
	e.stop = func() {
		e.mu.Lock()
		for _, nc := range e.conns {
			nc.Close()
		}
		e.mu.Unlock()
		stopServers()
	}
	js, err := e.connect()
	if err != nil {
		e.stop()
		return nil, err
	}
	if n > 1 {
		// JetStream is ready once the meta leader is elected.
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := js.AccountInfo(ctx)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				e.stop()
				return nil, fmt.Errorf("cluster's JetStream not ready: %w", err)
			}
			time.Sleep(100 * time.Millisecond) // a poll with a deadline
		}
	}
	e.js = js
	return e, nil
}

// freePort is a TCP port on 127.0.0.1 free now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// setup wires one side: n steps, inputs from gen, done called with the id
// of every saga whose last event is stored.
func setup(ctx context.Context, c config, e *env, gen payloadGen, done func(string)) (system, func(), error) {
	replicas := 1
	if c.cluster {
		replicas = 3
	}
	if c.kind == "choreo" {
		return setupChoreo(ctx, e, c.steps, gen, benchOptions(replicas), !c.oneRunner, done)
	}
	var connect func() (jetstream.JetStream, error)
	if !c.oneRunner {
		connect = e.connect
	}
	return setupRaw(ctx, e.js, connect, c.steps, replicas, gen, done)
}

// tracker starts sagas and waits for the observer to see them done.
type tracker struct {
	sys     system
	seq     atomic.Int64
	mu      sync.Mutex
	waiting map[string]chan struct{}
}

func newTracker() *tracker { return &tracker{waiting: map[string]chan struct{}{}} }

func (t *tracker) done(id string) {
	t.mu.Lock()
	ch := t.waiting[id]
	delete(t.waiting, id)
	t.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// one runs one saga to its end and returns its latency.
func (t *tracker) one(ctx context.Context) (time.Duration, error) {
	id := strconv.FormatInt(t.seq.Add(1), 10)
	ch := make(chan struct{})
	t.mu.Lock()
	t.waiting[id] = ch
	t.mu.Unlock()
	t0 := time.Now()
	if err := t.sys.start(ctx, id); err != nil {
		return 0, err
	}
	select {
	case <-ch:
		return time.Since(t0), nil
	case <-time.After(30 * time.Second):
		if d, ok := t.sys.(interface{ describe(string) string }); ok {
			return 0, fmt.Errorf("saga %s not done after 30s: %s", id, d.describe(id))
		}
		return 0, fmt.Errorf("saga %s not done after 30s", id)
	}
}

// drive keeps inflight sagas in flight until deadline or max sagas started,
// calls each with the latency of every saga done, and returns once every
// saga started is done.
func (t *tracker) drive(ctx context.Context, inflight int, deadline time.Time, max int, each func(time.Duration)) error {
	var (
		wg   sync.WaitGroup
		left atomic.Int64
		emu  sync.Mutex
		ferr error
	)
	left.Store(int64(max))
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && left.Add(-1) >= 0 {
				d, err := t.one(ctx)
				if err != nil {
					emu.Lock()
					ferr = err
					emu.Unlock()
					left.Store(0)
					return
				}
				each(d)
			}
		}()
	}
	wg.Wait()
	return ferr
}

// cpuTime is the user and system CPU time of the process so far: client
// and the embedded server together.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs c on a fresh server: a warm-up of 20 sagas one at a time,
// then inflight sagas in flight for dur or max sagas.
func measure(c config, dur time.Duration, max int) (result, error) {
	n := 1
	if c.cluster {
		n = 3
	}
	e, err := startServers(n, c.syncAlways)
	if err != nil {
		return result{}, err
	}
	defer e.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := newTracker()
	sys, stop, err := setup(ctx, c, e, payloads[c.payload], tr.done)
	if err != nil {
		return result{}, err
	}
	defer stop()
	tr.sys = sys

	for range 20 {
		if _, err := tr.one(ctx); err != nil {
			return result{}, err
		}
	}
	var (
		lmu  sync.Mutex
		lats []time.Duration
	)
	cpu0, t0 := cpuTime(), time.Now()
	err = tr.drive(ctx, c.inflight, t0.Add(dur), max, func(d time.Duration) {
		lmu.Lock()
		lats = append(lats, d)
		lmu.Unlock()
	})
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	if err != nil {
		return result{}, err
	}
	if len(lats) == 0 {
		return result{}, errors.New("no saga done")
	}
	slices.Sort(lats)
	return result{
		n: len(lats), steps: c.steps, rate: float64(len(lats)) / elapsed.Seconds(), cpu: cpu,
		p50: lats[len(lats)/2], p99: lats[len(lats)*99/100],
	}, nil
}

// observe calls done with the id token of every message on subject, from
// now on: the stored last event of a saga.
func observe(ctx context.Context, js jetstream.JetStream, stream, subject string, idToken int, done func(string)) (func(), error) {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		done(token(m.Subject(), idToken))
	})
	if err != nil {
		return nil, err
	}
	return cc.Stop, nil
}

func token(subject string, i int) string {
	n := 0
	start := 0
	for j := 0; j <= len(subject); j++ {
		if j == len(subject) || subject[j] == '.' {
			if n == i {
				return subject[start:j]
			}
			n++
			start = j + 1
		}
	}
	return ""
}
