// Command bench measures choreo against the raw JetStream limit, in one
// process and one run, on an embedded nats-server with file storage:
//
//	(a) a 4-step flow through choreo, saga state and idempotency on;
//	(b) the same 4 hops with raw nats.go jetstream: consume, publish the
//	    next event asynchronously, acknowledge after its PubAck.
//
// Each runs with 1 and with 100 sagas in flight. A saga is done when its
// last event is stored and seen by an observer. The last line is
// ratio=choreo/raw sagas per second at 100 in flight.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
)

type Payload struct {
	Order string `json:"order"`
	Hop   int    `json:"hop"`
}

func main() {
	dur := flag.Duration("duration", 4*time.Second, "measuring time per run (after warm-up)")
	max := flag.Int("max", 50000, "most sagas per run")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	only := flag.String("only", "", "run only this side (choreo or raw) at 100 in flight, for profiling")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	if *dur <= 0 || *max <= 0 {
		fmt.Fprintln(os.Stderr, "bench: -duration and -max must be positive")
		os.Exit(2)
	}
	var choreo100, raw100 float64
	inflights, kinds := []int{1, 100}, []string{"choreo", "raw"}
	if *only != "" {
		inflights, kinds = []int{100}, []string{*only}
	}
	for _, inflight := range inflights {
		for _, kind := range kinds {
			res, err := run(kind, inflight, *dur, *max)
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: %s: %v\n", kind, err)
				os.Exit(1)
			}
			fmt.Printf("%-6s in_flight=%-3d sagas=%-6d sagas/s=%-8.0f p50=%-8s p99=%s\n",
				kind, inflight, res.n, res.rate, res.p50.Round(time.Microsecond), res.p99.Round(time.Microsecond))
			if inflight == 100 {
				if kind == "choreo" {
					choreo100 = res.rate
				} else {
					raw100 = res.rate
				}
			}
		}
	}
	fmt.Printf("ratio=%.2f\n", choreo100/raw100)
	pprof.StopCPUProfile()
}

type result struct {
	n        int
	rate     float64
	p50, p99 time.Duration
}

// system is one side of the comparison: start a saga, be told when done.
type system interface {
	start(ctx context.Context, id string) error
}

func run(kind string, inflight int, dur time.Duration, max int) (result, error) {
	dir, err := os.MkdirTemp("", "choreo-bench-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return result{}, err
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return result{}, errors.New("server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return result{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	waiting := map[string]chan struct{}{}
	done := func(id string) {
		mu.Lock()
		ch := waiting[id]
		delete(waiting, id)
		mu.Unlock()
		if ch != nil {
			close(ch)
		}
	}
	var sys system
	var stop func()
	switch kind {
	case "choreo":
		sys, stop, err = setupChoreo(ctx, js, done)
	default:
		sys, stop, err = setupRaw(ctx, js, done)
	}
	if err != nil {
		return result{}, err
	}
	defer stop()

	var seq atomic.Int64
	one := func() (time.Duration, error) {
		id := strconv.FormatInt(seq.Add(1), 10)
		ch := make(chan struct{})
		mu.Lock()
		waiting[id] = ch
		mu.Unlock()
		t0 := time.Now()
		if err := sys.start(ctx, id); err != nil {
			return 0, err
		}
		select {
		case <-ch:
			return time.Since(t0), nil
		case <-time.After(30 * time.Second):
			return 0, fmt.Errorf("saga %s not done after 30s", id)
		}
	}
	// Warm up, then measure.
	for range 20 {
		if _, err := one(); err != nil {
			return result{}, err
		}
	}
	var (
		lmu  sync.Mutex
		lats []time.Duration
		ferr error
		wg   sync.WaitGroup
		left atomic.Int64
	)
	left.Store(int64(max))
	deadline := time.Now().Add(dur)
	t0 := time.Now()
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && left.Add(-1) >= 0 {
				d, err := one()
				lmu.Lock()
				if err != nil {
					ferr = err
					lmu.Unlock()
					return
				}
				lats = append(lats, d)
				lmu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if ferr != nil {
		return result{}, ferr
	}
	slices.Sort(lats)
	return result{
		n: len(lats), rate: float64(len(lats)) / elapsed.Seconds(),
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

type choreoSys struct {
	c    *saga.Client
	flow *saga.Flow
}

func (s *choreoSys) start(ctx context.Context, id string) error {
	return s.c.Start(ctx, s.flow, id, Payload{Order: id})
}

func setupChoreo(ctx context.Context, js jetstream.JetStream, done func(string)) (system, func(), error) {
	c, err := saga.New(ctx, js)
	if err != nil {
		return nil, nil, err
	}
	steps := []*saga.Step[Payload, Payload]{
		saga.NewStep[Payload, Payload]("s1"), saga.NewStep[Payload, Payload]("s2"),
		saga.NewStep[Payload, Payload]("s3"), saga.NewStep[Payload, Payload]("s4"),
	}
	flow, err := saga.Define("bench", 1, steps[0], steps[1], steps[2], steps[3])
	if err != nil {
		return nil, nil, err
	}
	r, err := saga.NewRunner(c, saga.WithConcurrency(256))
	if err != nil {
		return nil, nil, err
	}
	undo := func(context.Context, Payload, Payload) error { return nil }
	for _, s := range steps {
		if err := saga.Handle(r, s, func(ctx context.Context, p Payload) (Payload, error) {
			p.Hop++
			return p, nil
		}, undo); err != nil {
			return nil, nil, err
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- r.Run(rctx) }()
	select {
	case <-r.Ready():
	case err := <-errc:
		cancel()
		return nil, nil, err
	}
	stopObs, err := observe(ctx, js, saga.StreamName, "choreo.log.bench.*.s4.done", 3, done)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return &choreoSys{c: c, flow: flow}, func() { stopObs(); cancel(); <-errc }, nil
}

type rawSys struct{ js jetstream.JetStream }

func (s *rawSys) start(ctx context.Context, id string) error {
	data := fmt.Appendf(nil, `{"order":%q,"hop":0}`, id)
	_, err := s.js.Publish(ctx, "raw.0."+id, data)
	return err
}

// setupRaw wires the physical limit: four durable consumers, each
// publishing the next hop asynchronously and acknowledging after the
// PubAck, as a careful hand-written service would.
func setupRaw(ctx context.Context, js jetstream.JetStream, done func(string)) (system, func(), error) {
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		return nil, nil, err
	}
	var stops []func()
	for hop := 1; hop <= 4; hop++ {
		cons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{
			Durable: "hop" + strconv.Itoa(hop), FilterSubject: fmt.Sprintf("raw.%d.*", hop-1),
			AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 256,
		})
		if err != nil {
			return nil, nil, err
		}
		next := fmt.Sprintf("raw.%d.", hop)
		cc, err := cons.Consume(func(m jetstream.Msg) {
			id := token(m.Subject(), 2)
			f, err := js.PublishAsync(next+id, m.Data(), jetstream.WithMsgID(next+id))
			if err != nil {
				_ = m.Nak()
				return
			}
			go func() {
				select {
				case <-f.Ok():
					_ = m.Ack()
				case <-f.Err():
					_ = m.Nak()
				}
			}()
		}, jetstream.PullMaxMessages(256))
		if err != nil {
			return nil, nil, err
		}
		stops = append(stops, cc.Stop)
	}
	stopObs, err := observe(ctx, js, "RAW", "raw.4.*", 2, done)
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, stopObs)
	return &rawSys{js: js}, func() {
		for _, s := range stops {
			s()
		}
	}, nil
}
