package saga_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
)

type Ticket struct{ N int }

// syncBuffer is a log sink the runner's goroutines may write at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An ended saga is removed once its retention has passed, log, commands
// and timers; a saga still running, and one parked for an operator, are
// kept however old they are.
func TestEndedSagasExpire(t *testing.T) {
	srv := sagatest.NewServer(t)
	c := srv.Client(saga.WithRetention(time.Second))
	hold := saga.NewStep[Ticket, Ticket]("hold", saga.WithCompensationRetry(saga.RetryPolicy{MaxAttempts: 1}))
	pay := saga.NewStep[Ticket, Ticket]("pay")
	f := saga.MustDefine[Ticket]("expiring", 1, hold, pay, saga.Deadline(time.Hour))
	r, _ := saga.NewRunner(c, saga.WithDrainTimeout(100*time.Millisecond))
	_ = saga.Handle(r, hold, func(_ context.Context, t Ticket) (Ticket, error) { return t, nil },
		func(_ context.Context, t Ticket, _ Ticket) error {
			if t.N == 3 {
				return errors.New("cannot undo") // parks the saga
			}
			return nil
		})
	_ = saga.Handle(r, pay, func(ctx context.Context, t Ticket) (Ticket, error) {
		switch t.N {
		case 2, 3:
			return t, saga.Abortf("declined")
		case 4:
			<-ctx.Done() // runs until the runner stops: the saga stays running
			return t, ctx.Err()
		}
		return t, nil
	}, nil)
	sagatest.Run(t, r)
	ctx := context.Background()
	for i, id := range []string{"done", "undone", "parked", "running"} {
		if err := saga.Start(ctx, c, f, id, Ticket{N: i + 1}); err != nil {
			t.Fatal(err)
		}
	}
	sagatest.AwaitStatus(t, c, f, "parked", 10*time.Second, saga.StatusCompensationFailed)
	_, js := srv.Connect()
	logged := func(id string) uint64 {
		return left(js, t, access.StreamName, "choreo.*.expiring."+id+".>") + left(js, t, access.TimerStream, "choreo.*.expiring."+id)
	}
	before := logged("parked") // start, hold done, pay failed, hold's command, parked
	if before < 5 {
		t.Fatalf("the parked saga has %d messages, want at least 5 (is the count right?)", before)
	}
	sagatest.Poll(t, 30*time.Second, func() bool {
		for _, id := range []string{"done", "undone"} {
			if _, err := c.Get(ctx, f, id); !errors.Is(err, saga.ErrNotFound) {
				return false
			}
		}
		return true
	}, func() string { return "ended sagas still there after their retention" })
	for _, id := range []string{"done", "undone"} {
		if n := logged(id); n != 0 {
			t.Errorf("saga %s: %d messages left", id, n)
		}
	}
	// The kept sagas are checked after the ended ones went, past the
	// retention they would have had.
	if n := logged("parked"); n != before {
		t.Errorf("the parked saga has %d messages, had %d", n, before)
	}
	for id, want := range map[string]saga.Status{"parked": saga.StatusCompensationFailed, "running": saga.StatusRunning} {
		if st, err := c.Get(ctx, f, id); err != nil || st.Status != want {
			t.Errorf("saga %s: %v %v, want it kept as %s", id, st, err, want)
		}
	}
}

// left counts the messages of stream on subject.
func left(js jetstream.JetStream, t *testing.T, stream, subject string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// A step that no runner serves leaves its saga running: Get says so, and a
// runner of the flow says so at start.
func TestUnservedStepIsVisible(t *testing.T) {
	srv := sagatest.NewServer(t)
	c := srv.Client()
	first := saga.NewStep[Ticket, Ticket]("first")
	second := saga.NewStep[Ticket, Ticket]("second", saga.Owner("elsewhere"))
	f := saga.MustDefine[Ticket]("halfserved", 1, first, second)
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c2 := srv.Client(saga.WithLogger(logger))
	r, _ := saga.NewRunner(c2)
	_ = saga.Handle(r, first, func(_ context.Context, t Ticket) (Ticket, error) { return t, nil }, nil)
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), c, f, "h1", Ticket{N: 1}); err != nil {
		t.Fatal(err)
	}
	var st *saga.State
	sagatest.Poll(t, 10*time.Second, func() bool {
		var err error
		st, err = c.Get(context.Background(), f, "h1")
		return err == nil && st.Step("second").Status == saga.StepRunning
	}, func() string { return "second never triggered" })
	if !st.Step("second").Unserved || st.Step("first").Unserved {
		t.Errorf("steps %+v; want second unserved", st.Steps)
	}
	out := logs.String()
	if !strings.Contains(out, "steps no runner serves yet") || !strings.Contains(out, "steps=second") {
		t.Errorf("runner's start-up log does not name the unserved step:\n%s", out)
	}
	// The runner logs each message it handles at debug, naming its saga.
	if !strings.Contains(out, "choreo: recorded") || !strings.Contains(out, "saga=h1") {
		t.Errorf("no debug line about saga h1:\n%s", out)
	}
}

// Retries that run out are a warning that names the saga.
func TestExhaustedRetriesAreLogged(t *testing.T) {
	srv := sagatest.NewServer(t)
	var logs syncBuffer
	c := srv.Client(saga.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	flaky := saga.NewStep[Ticket, Ticket]("flaky", saga.WithRetry(saga.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond}))
	f := saga.MustDefine[Ticket]("exhausting", 1, flaky)
	r, _ := saga.NewRunner(c)
	_ = saga.Handle(r, flaky, func(_ context.Context, t Ticket) (Ticket, error) { return t, errors.New("busy") }, nil)
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), c, f, "x1", Ticket{}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, c, f, "x1", 10*time.Second, saga.StatusCompensated)
	sagatest.Poll(t, 5*time.Second, func() bool {
		out := logs.String()
		return strings.Contains(out, "level=WARN") && strings.Contains(out, "retries exhausted") && strings.Contains(out, "saga=x1")
	}, func() string { return "no warning about the exhausted retries:\n" + logs.String() })
}
