package sagatest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
)

// Clock is a saga clock a test moves: a three-day wait, a deadline or a
// scheduled start is tested in milliseconds. Every client made by the
// server's Client and Ops after Clock was called reads it (saga.WithClock);
// give it to clients made otherwise with Option.
//
// The broker's schedules (a saga's deadline, a step's wait) run on the
// broker's clock. Advance fires those its time makes due, as the broker
// would: it removes each schedule and publishes its message to its target.
// (The broker refuses the Nats-Scheduler header it sets on what it fires
// from anyone else: choreo judges a timer fired this way by the saga's
// clock, which the test moved.)
type Clock struct {
	srv *Server
	mu  sync.Mutex
	now time.Time
}

// Clock returns the server's test clock, made at the first call, starting
// at the real time.
func (s *Server) Clock() *Clock {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clock == nil {
		s.clock = &Clock{srv: s, now: time.Now().UTC()}
	}
	return s.clock
}

func (s *Server) withClock(opts []saga.Option) []saga.Option {
	s.mu.Lock()
	c, r := s.clock, s.ring
	s.mu.Unlock()
	if r != nil {
		opts = append([]saga.Option{saga.WithKeyRing(r)}, opts...)
	}
	if c == nil {
		return opts
	}
	return append([]saga.Option{c.Option()}, opts...)
}

// Now is the clock's time: the real time moved on by every Advance.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Option gives a client the clock.
func (c *Clock) Option() saga.Option { return saga.WithClock(c.Now) }

// Advance moves the clock on by d and fires the broker schedules now due
// by it. It returns how many it fired.
func (c *Clock) Advance(tb testing.TB, d time.Duration) int {
	tb.Helper()
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	c.mu.Unlock()
	n, err := c.fire(now)
	if err != nil {
		tb.Fatalf("sagatest: clock: fire schedules: %v", err)
	}
	return n
}

// fire publishes the target of every schedule due at now.
func (c *Clock) fire(now time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := c.srv.Connect()
	stream, err := js.Stream(ctx, access.TimerStream)
	if err != nil {
		return 0, err
	}
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return 0, err
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"choreo.sched.>"}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return 0, err
	}
	type due struct {
		seq uint64
		m   *nats.Msg
	}
	var fire []due
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := cons.Next(jetstream.FetchContext(cctx))
		ccancel()
		if err != nil {
			break // none left
		}
		md, merr := m.Metadata()
		if merr != nil {
			return 0, merr
		}
		if at, ok := strings.CutPrefix(m.Headers().Get("Nats-Schedule"), "@at "); ok {
			if t, perr := time.Parse(time.RFC3339Nano, at); perr == nil && !t.After(now) {
				out := nats.NewMsg(m.Headers().Get("Nats-Schedule-Target"))
				for k, v := range m.Headers() {
					if !strings.HasPrefix(k, "Nats-") {
						out.Header[k] = v
					}
				}
				out.Data = m.Data()
				fire = append(fire, due{md.Sequence.Stream, out})
			}
		}
		if md.NumPending == 0 {
			break
		}
	}
	for _, f := range fire {
		// The schedule goes first: the broker must not fire it again.
		if err := stream.DeleteMsg(ctx, f.seq); err != nil && !strings.Contains(err.Error(), "not found") {
			return 0, err
		}
		if _, err := js.PublishMsg(ctx, f.m); err != nil {
			return 0, err
		}
	}
	return len(fire), nil
}
