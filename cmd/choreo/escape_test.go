package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/saga/sagatest"
)

// A participant may dead-letter a message of its flow with the headers it
// likes: what the command line prints of it must not drive the operator's
// terminal (an OSC 52 escape writes their clipboard; others clear the
// screen, hide lines or retitle the window).
func TestTextOutputCarriesNoTerminalEscapes(t *testing.T) {
	srv := sagatest.NewServer(t)
	srv.Client() // provisions choreo
	nc, _ := srv.Connect()
	m := nats.NewMsg("choreo.dlq.trip")
	m.Header.Set("Choreo-Dlq-Reason", "ok\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2J\x9b31m")
	m.Header.Set("Choreo-Dlq-Subject", "choreo.log.trip.x.v1.book.done\x1b[8m")
	m.Data = []byte("payload\x1b]0;pwned\x07")
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 20*time.Second, func() bool {
		dls, _ := srv.Ops().DeadLetters(context.Background(), "")
		return len(dls) == 1
	}, func() string { return "not dead-lettered" })
	for _, args := range [][]string{{"dlq", "ls"}, {"dlq", "show", "1"}} {
		code, out, errs := runCLI(t, srv.ClientURL(), args...)
		if code != 0 {
			t.Fatalf("%v: %d %s", args, code, errs)
		}
		if strings.IndexByte(out, 0x1b) >= 0 || strings.IndexByte(out, 0x07) >= 0 || strings.IndexByte(out, 0x9b) >= 0 {
			t.Errorf("%v prints terminal escapes: %q", args, out)
		}
		if !strings.Contains(out, "ok") {
			t.Errorf("%v: %q", args, out)
		}
	}
}
