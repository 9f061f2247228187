package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/choreo-go/choreo/saga/access"
)

// longRun runs the 4-step flow through choreo, 100 sagas in flight, until
// max sagas are done or limit has passed, and prints a line per window.
func longRun(max int, limit, window time.Duration) error {
	e, err := startEnv(false)
	if err != nil {
		return err
	}
	defer e.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := newTracker()
	sys, stop, err := setupChoreo(ctx, e, 4, payloads["small"], longRunOptions(), true, tr.done)
	if err != nil {
		return err
	}
	defer stop()
	tr.sys = sys
	stream, err := e.js.Stream(ctx, access.StreamName)
	if err != nil {
		return err
	}

	var (
		mu    sync.Mutex
		total int
		lats  []time.Duration // of the current window
	)
	t0 := time.Now()
	last, lastN := t0, 0
	report := func() {
		mu.Lock()
		n, wl := total, lats
		lats = nil
		mu.Unlock()
		now := time.Now()
		rate := float64(n-lastN) / now.Sub(last).Seconds()
		last, lastN = now, n
		p99 := "-"
		if len(wl) > 0 {
			slices.Sort(wl)
			p99 = wl[len(wl)*99/100].Round(time.Microsecond).String()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		subjects, msgs := "?", "?"
		ictx, icancel := context.WithTimeout(ctx, 10*time.Second)
		if info, err := stream.Info(ictx); err == nil {
			subjects, msgs = strconv.FormatUint(info.State.NumSubjects, 10), strconv.FormatUint(info.State.Msgs, 10)
		}
		icancel()
		fmt.Printf("t=%-5s sagas=%-7d sagas/s=%-6.0f p99=%-9s rss=%-8s heap_inuse=%-8s subjects=%-8s msgs=%s\n",
			now.Sub(t0).Round(time.Second), n, rate, p99, mib(rssBytes()), mib(int64(ms.HeapInuse)), subjects, msgs)
	}

	// Start from what this run holds: return what the earlier sections
	// left to the OS, and print the baseline.
	debug.FreeOSMemory()
	report()
	tick := time.NewTicker(window)
	quit, ticked := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ticked)
		for {
			select {
			case <-tick.C:
				report()
			case <-quit:
				return
			}
		}
	}()
	err = tr.drive(ctx, 100, t0.Add(limit), max, func(d time.Duration) {
		mu.Lock()
		total++
		lats = append(lats, d)
		mu.Unlock()
	})
	tick.Stop()
	close(quit)
	<-ticked
	if err != nil {
		return err
	}
	report() // the last, partial window
	elapsed := time.Since(t0)
	why := "count"
	if total < max {
		why = "time cap"
	}
	fmt.Printf("long: %d sagas in %v, %.0f sagas/s overall (stopped by %s)\n",
		total, elapsed.Round(100*time.Millisecond), float64(total)/elapsed.Seconds(), why)
	return nil
}

// rssBytes is the process's resident set (VmRSS), the embedded server
// included; -1 when unknown.
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

func mib(b int64) string {
	if b < 0 {
		return "?"
	}
	return fmt.Sprintf("%.0fMiB", float64(b)/(1<<20))
}
