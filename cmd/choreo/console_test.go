package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
)

func TestConsoleRefusesANonLoopbackAddress(t *testing.T) {
	url, _, _, _, _ := system(t)
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:8223"} {
		code, _, errw := runCLI(t, url, "console", "--addr", addr)
		if code != 2 || !strings.Contains(errw, "not a loopback address") || strings.Count(errw, "\n") != 1 {
			t.Errorf("console --addr %s: %d %q", addr, code, errw)
		}
	}
	if code, _, errw := runCLI(t, url, "console", "--addr", "nonsense"); code != 2 || !strings.Contains(errw, "want host:port") {
		t.Errorf("console --addr nonsense: %d %q", code, errw)
	}
}

// The console serves with the command line's connection past --timeout,
// until stopped.
func TestConsoleServes(t *testing.T) {
	url, c, v1, _, _ := system(t)
	if err := saga.Start(context.Background(), c, v1, "t1", Trip{Who: "ada"}); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	stopc := make(chan func(), 1)
	consoleReady = func(u string, stop func()) { ready <- u; stopc <- stop }
	t.Cleanup(func() { consoleReady = func(string, func()) {} })
	done := make(chan int, 1)
	started := time.Now()
	var out string
	go func() {
		code, o, _ := runCLI(t, url, "--timeout", "1s", "console", "--addr", "127.0.0.1:0")
		out = o
		done <- code
	}()
	var base string
	select {
	case base = <-ready:
	case code := <-done:
		t.Fatalf("console ended with %d", code)
	case <-time.After(30 * time.Second):
		t.Fatal("console did not start")
	}
	base, token, ok := strings.Cut(base, "?token=")
	if !ok || len(token) != 32 {
		t.Fatalf("console URL %q has no token", base)
	}
	if resp, err := http.Get(base + "api/flows"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without its token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	get := func() string {
		resp, err := http.Get(base + "api/flows/trip/v1/counts?token=" + token)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprint(resp.StatusCode, " ", string(b))
	}
	var got string
	sagatest.Poll(t, 20*time.Second, func() bool { got = get(); return strings.Contains(got, `"unserved":1`) },
		func() string { return "counts: " + got })
	// It keeps answering, past the command's 1s --timeout: asked again
	// and again until a request made after it has its answer.
	sagatest.Poll(t, 20*time.Second, func() bool {
		after := time.Since(started) > 1500*time.Millisecond
		got = get()
		return after || !strings.HasPrefix(got, "200 ")
	}, func() string { return "counts: " + got })
	if !strings.HasPrefix(got, "200 ") {
		t.Errorf("after --timeout: %s", got)
	}
	(<-stopc)()
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(out, "console on http://127.0.0.1:") {
			t.Errorf("console: %d %q", code, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("console did not stop")
	}
}
