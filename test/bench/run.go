package main

import (
	"context"
	"errors"
	"fmt"
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
}

func (c config) with(kind string) config { c.kind = kind; return c }

func (c config) String() string {
	return fmt.Sprintf("%s steps=%d in_flight=%d payload=%s sync_always=%v", c.kind, c.steps, c.inflight, c.payload, c.syncAlways)
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

// env is an embedded server with file storage in a temporary directory,
// listening on 127.0.0.1 only, and a client of it.
type env struct {
	js   jetstream.JetStream
	stop func()
}

func startEnv(syncAlways bool) (*env, error) {
	dir, err := os.MkdirTemp("", "choreo-bench-")
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		SyncAlways: syncAlways, NoLog: true, NoSigs: true,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go ns.Start()
	stopServer := func() { ns.Shutdown(); ns.WaitForShutdown(); os.RemoveAll(dir) }
	if !ns.ReadyForConnections(10 * time.Second) {
		stopServer()
		return nil, errors.New("server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		stopServer()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		stopServer()
		return nil, err
	}
	return &env{js: js, stop: func() { nc.Close(); stopServer() }}, nil
}

// setup wires one side: n steps, inputs from gen, done called with the id
// of every saga whose last event is stored.
func setup(ctx context.Context, kind string, js jetstream.JetStream, steps int, gen payloadGen, done func(string)) (system, func(), error) {
	if kind == "choreo" {
		return setupChoreo(ctx, js, steps, gen, benchOptions(), done)
	}
	return setupRaw(ctx, js, steps, gen, done)
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
	e, err := startEnv(c.syncAlways)
	if err != nil {
		return result{}, err
	}
	defer e.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := newTracker()
	sys, stop, err := setup(ctx, c.kind, e.js, c.steps, payloads[c.payload], tr.done)
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
