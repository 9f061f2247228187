// Command bench measures choreo against the raw JetStream limit, in one
// process and one run, on an embedded nats-server with file storage:
//
//	choreo: an n-step flow through choreo, saga state, idempotency and the
//	        check of every event on, each step run by the runner, client
//	        and connection of its own service (the shape services deploy);
//	raw:    the same n hops with raw nats.go jetstream: consume, publish the
//	        next event asynchronously, acknowledge after its PubAck; each
//	        hop on a connection of its own too (one connection for all in
//	        the one-runner rows), so both sides pay for the same shape.
//
// A saga is done when its last event is stored and seen by an observer.
// Each section can be run alone with -sections:
//
//	latency  4 steps, 1 and 100 sagas in flight (p50, p99)
//	hops     flows of 2, 4 and 8 steps at 100 in flight: sagas/s, hops/s
//	         and process CPU (client and server, both in this process)
//	         per hop, to show whether choreo's cost per hop grows with
//	         the flow's length
//	payload  the 4-step flow with a 64 KiB JSON payload
//	sync     the 4-step flow on a server with SyncAlways (what production
//	         runs with sync_interval: always)
//	shape    the 4-step flow with one runner and client serving every step
//	         (no service deploys it so; the headline before 2026-12)
//	cluster  the 4-step flow on three embedded servers, every stream
//	         replicated three times (raw's too), services on the nodes in
//	         turn; not run by default: about one run in three, a saga
//	         stops at a step whose trigger is stored but never acted on
//	         (an open bug, docs/performance.md), and the run fails
//	search   choreo only: -search-sagas sagas with three search
//	         attributes and as many without: index bytes per saga, start
//	         rate with and without, lookup times (Find by equality and by
//	         range, Get) against List
//	long     choreo only, at least -long-max sagas (at most -long-cap),
//	         one line per -long-window: throughput, the process's RSS and
//	         heap, the CHOREO stream's subjects and messages
//
// The last line is ratio=choreo/raw sagas per second for 4 steps at 100 in
// flight on the default sync setting, a runner per service.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

var allSections = []string{"latency", "hops", "payload", "sync", "shape", "cluster", "long", "search"}

// defaultSections are run without -sections: all but cluster (see above).
var defaultSections = []string{"latency", "hops", "payload", "sync", "shape", "long", "search"}

func main() {
	dur := flag.Duration("duration", 4*time.Second, "measuring time per run (after warm-up)")
	max := flag.Int("max", 50000, "most sagas per run")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	only := flag.String("only", "", "run only this side (choreo or raw); alone, only at 4 steps and 100 in flight, for profiling")
	sectionsFlag := flag.String("sections", strings.Join(defaultSections, ","), "comma-separated sections to run: "+strings.Join(allSections, ", ")+" (or all)")
	long := flag.Bool("long", true, "run the long section (false skips it whatever -sections says)")
	longMax := flag.Int("long-max", 200000, "sagas in the long run")
	longCap := flag.Duration("long-cap", 120*time.Second, "most time of the long run")
	longWindow := flag.Duration("long-window", 10*time.Second, "reporting window of the long run")
	searchSagas := flag.Int("search-sagas", 10000, "sagas of each flow in the search section")
	blockProfile := flag.String("blockprofile", "", "write a profile of where goroutines waited (blocking and mutexes) to this file and this file.mutex")
	flag.Parse()
	if *blockProfile != "" {
		runtime.SetBlockProfileRate(10000) // a sample per 10µs blocked
		runtime.SetMutexProfileFraction(10)
		defer func() {
			for _, p := range []struct{ name, file string }{{"block", *blockProfile}, {"mutex", *blockProfile + ".mutex"}} {
				if f, err := os.Create(p.file); err == nil {
					_ = pprof.Lookup(p.name).WriteTo(f, 0)
					f.Close()
				}
			}
		}()
	}

	fail := func(code int, format string, args ...any) {
		pprof.StopCPUProfile()
		fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
		os.Exit(code)
	}
	if *dur <= 0 || *max <= 0 {
		fail(2, "-duration and -max must be positive")
	}
	if *longMax <= 0 || *longCap <= 0 || *longWindow <= 0 {
		fail(2, "-long-max, -long-cap and -long-window must be positive")
	}
	kinds := []string{"choreo", "raw"}
	if *only != "" {
		if !slices.Contains(kinds, *only) {
			fail(2, "-only must be choreo or raw, got %q", *only)
		}
		kinds = []string{*only}
	}
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	spec := *sectionsFlag
	if *only != "" && !explicit["sections"] {
		spec = "latency" // -only alone: one measurement, as it always was
	}
	sections := map[string]bool{}
	for _, s := range strings.Split(spec, ",") {
		switch s = strings.TrimSpace(s); {
		case s == "all":
			for _, a := range allSections {
				sections[a] = true
			}
		case slices.Contains(allSections, s):
			sections[s] = true
		case s != "":
			fail(2, "unknown section %q (have %s)", s, strings.Join(allSections, ", "))
		}
	}
	if !*long {
		delete(sections, "long")
	}

	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fail(2, "%v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(2, "%v", err)
		}
	}

	b := &bench{dur: *dur, max: *max, kinds: kinds, results: map[config]result{}}
	t0 := time.Now()
	base := config{steps: 4, inflight: 100, payload: "small"}
	if sections["latency"] {
		fmt.Println("== latency: 4 steps, default sync, choreo vs raw")
		inflights := []int{1, 100}
		if *only != "" {
			inflights = []int{100}
		}
		for _, n := range inflights {
			c := base
			c.inflight = n
			if err := b.line(fmt.Sprintf("in_flight=%d", n), c); err != nil {
				fail(1, "%v", err)
			}
		}
	}
	if sections["hops"] {
		fmt.Println("== hops: flow length, 100 in flight, default sync; cpu/hop is process CPU (client+server) per hop")
		for _, n := range []int{2, 4, 8} {
			c := base
			c.steps = n
			if err := b.line(fmt.Sprintf("steps=%d", n), c); err != nil {
				fail(1, "%v", err)
			}
		}
	}
	if sections["payload"] {
		fmt.Printf("== payload: 4 steps, 100 in flight, default sync, a %d-byte JSON payload\n", payloadSize("64KiB"))
		c := base
		c.payload = "64KiB"
		if err := b.line("payload=64KiB", c); err != nil {
			fail(1, "%v", err)
		}
	}
	if sections["sync"] {
		fmt.Println("== sync: 4 steps, 100 in flight, server SyncAlways (fsync every write)")
		c := base
		c.syncAlways = true
		if err := b.line("sync=always", c); err != nil {
			fail(1, "%v", err)
		}
	}
	if sections["shape"] {
		fmt.Println("== shape: 4 steps, default sync, one runner and client serving every step")
		for _, n := range []int{1, 100} {
			c := base
			c.inflight, c.oneRunner = n, true
			if err := b.line(fmt.Sprintf("one_runner/%d", n), c); err != nil {
				fail(1, "%v", err)
			}
		}
	}
	if sections["cluster"] {
		fmt.Println("== cluster: 4 steps, 100 in flight, 3 embedded servers, streams with 3 replicas")
		c := base
		c.cluster = true
		if err := b.line("cluster=3", c); err != nil {
			fail(1, "%v", err)
		}
	}
	if sections["long"] && slices.Contains(kinds, "choreo") {
		fmt.Printf("== long: choreo only, 4 steps, 100 in flight, %d sagas or %v, a line per %v\n", *longMax, *longCap, *longWindow)
		if err := longRun(*longMax, *longCap, *longWindow); err != nil {
			fail(1, "long: %v", err)
		}
	}
	if sections["search"] && slices.Contains(kinds, "choreo") {
		fmt.Printf("== search: %d sagas with three search attributes (customer, total, country) and %d without, no runner\n", *searchSagas, *searchSagas)
		if err := searchRun(*searchSagas); err != nil {
			fail(1, "search: %v", err)
		}
	}
	fmt.Printf("total %v\n", time.Since(t0).Round(100*time.Millisecond))

	// The last line: what CI and docs/performance.md quote.
	ch, okc := b.results[base.with("choreo")]
	raw, okr := b.results[base.with("raw")]
	if okc || okr {
		fmt.Printf("ratio=%.2f\n", ch.rate/raw.rate)
	}
	pprof.StopCPUProfile()
}

// bench runs configurations once each and prints them.
type bench struct {
	dur     time.Duration
	max     int
	kinds   []string
	results map[config]result // a configuration measured in two sections is run once
}

func (b *bench) get(c config) (result, error) {
	if r, ok := b.results[c]; ok {
		return r, nil
	}
	r, err := measure(c, b.dur, b.max)
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", c, err)
	}
	b.results[c] = r
	return r, nil
}

// line measures c on each side and prints one line: choreo, raw, and the
// ratio of their sagas per second.
func (b *bench) line(label string, c config) error {
	var out strings.Builder
	fmt.Fprintf(&out, "%-14s", label)
	rates := map[string]float64{}
	for _, kind := range b.kinds {
		r, err := b.get(c.with(kind))
		if err != nil {
			return err
		}
		rates[kind] = r.rate
		fmt.Fprintf(&out, " | %-6s %s", kind, r)
	}
	if len(rates) == 2 {
		fmt.Fprintf(&out, " | choreo/raw=%.2f", rates["choreo"]/rates["raw"])
	}
	fmt.Println(strings.TrimRight(out.String(), " "))
	return nil
}
