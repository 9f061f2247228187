package saga_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// The saga stream deleted under a running runner: it says so once, at
// error level, naming what is missing (not once per retry); once the
// stream is back it says so, receives again, and new sagas complete.
func TestDeletedStreamIsLoggedOnceAndTheRunnerComesBack(t *testing.T) {
	srv := sagatest.NewServer(t)
	var logs syncBuffer
	c := srv.Client(saga.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	step := saga.NewStep[Ticket, Ticket]("punch")
	f := saga.MustDefine[Ticket]("gone", 1, step)
	r, _ := saga.NewRunner(c)
	_ = saga.Handle(r, step, func(_ context.Context, t Ticket) (Ticket, error) { return t, nil }, nil)
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), c, f, "g1", Ticket{N: 1}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, c, f, "g1", 10*time.Second, saga.StatusCompleted)

	_, js := srv.Connect()
	if err := js.DeleteStream(context.Background(), access.StreamName); err != nil {
		t.Fatal(err)
	}
	// Wait until the runner has failed to reattach a few times: each is a
	// debug line, and still one error line only.
	sagatest.Poll(t, 60*time.Second, func() bool {
		return strings.Count(logs.String(), "consumer still missing") >= 3
	}, func() string { return "the runner did not retry:\n" + logs.String() })
	out := logs.String()
	if n := strings.Count(out, "level=ERROR"); n != 1 {
		t.Errorf("%d error lines, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "consumer missing") || !strings.Contains(out, "stream="+access.StreamName) {
		t.Errorf("the error line does not name what is missing:\n%s", out)
	}

	// The stream comes back (here: a client recreates choreo's streams,
	// as the provisioning of a restart does).
	srv.Client()
	sagatest.Poll(t, 60*time.Second, func() bool {
		return strings.Contains(logs.String(), "every consumer is back")
	}, func() string { return "the runner never said it is back:\n" + logs.String() })
	if err := saga.Start(context.Background(), c, f, "g2", Ticket{N: 2}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, c, f, "g2", 30*time.Second, saga.StatusCompleted)
}
