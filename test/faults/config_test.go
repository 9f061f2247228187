package faults_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/saga/sagatest"
)

type limIn struct{ N int }
type limMid struct{ N int }
type limOut struct{ N int }

// Scenario 12: the saga stream reaches its limits. New sagas are refused
// loudly (ErrStreamFull) while there is room left for the sagas in flight,
// which all finish; none is dropped.
func TestStreamLimitsRefuseNewSagasLoudly(t *testing.T) {
	srv := sagatest.NewServer(t)
	c := srv.Client(access.WithStreamLimits(300, 0))
	a := saga.NewStep[limIn, limMid]("a")
	b := saga.NewStep[limMid, limOut]("b")
	flow := saga.MustDefine[limIn]("limited", 1, a, b)
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	_ = saga.Handle(r, a, func(_ context.Context, in limIn) (limMid, error) { return limMid(in), nil }, func(context.Context, limIn, limMid) error { return nil })
	_ = saga.Handle(r, b, func(_ context.Context, in limMid) (limOut, error) { return limOut(in), nil }, func(context.Context, limMid, limOut) error { return nil })
	sagatest.Run(t, r)
	ctx := context.Background()
	var acked []string
	var full error
	for i := 0; full == nil && i < 1000; i++ {
		id := fmt.Sprintf("s%d", i)
		switch err := saga.Start(ctx, c, flow, id, limIn{i}); {
		case err == nil:
			acked = append(acked, id)
		case errors.Is(err, saga.ErrStreamFull):
			full = err
		default:
			t.Fatalf("start %s: %v", id, err)
		}
	}
	if full == nil {
		t.Fatal("1000 sagas fit in a stream of 300 messages")
	}
	t.Logf("refused after %d sagas: %v", len(acked), full)
	if !strings.Contains(full.Error(), "new sagas are refused") {
		t.Errorf("the refusal does not say why: %v", full)
	}
	for _, id := range acked {
		sagatest.AwaitStatus(t, c, flow, id, 20*time.Second, saga.StatusCompleted)
	}
	// Still full, still loud; and nothing was dropped.
	if err := saga.Start(ctx, c, flow, "late", limIn{}); !errors.Is(err, saga.ErrStreamFull) {
		t.Errorf("a start on a full stream: %v", err)
	}
	list, err := c.List(ctx, flow)
	if err != nil || len(list) != len(acked) {
		t.Errorf("%d sagas in the stream, %d acknowledged (%v)", len(list), len(acked), err)
	}
	// A retried start of a saga that exists is still fine.
	if err := saga.Start(ctx, c, flow, acked[0], limIn{}); err != nil {
		t.Errorf("retried start on a full stream: %v", err)
	}
	t.Logf("sagas=%d faults=0 lost=0 double_effects=0 stuck=0 refused_loudly=true", len(acked))
}

// Scenario 13: unsafe configurations are refused at start-up with a
// clear message.
func TestUnsafeConfigRefused(t *testing.T) {
	ctx := context.Background()
	t.Run("memory stream taken over", func(t *testing.T) {
		srv := sagatest.NewServer(t)
		_, js := srv.Connect()
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: access.StreamName, Subjects: []string{"choreo.log.>", "choreo.cmd.>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
		if _, err := saga.New(ctx, js); !errors.Is(err, saga.ErrUnsafeConfig) || !strings.Contains(err.Error(), "memory storage") {
			t.Errorf("memory stream: %v", err)
		}
		// A service binary stops start-up with the one-line reason.
		out, err := exec.Command(filepath.Join(bin, "payment"), "--nats", srv.ClientURL()).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "unsafe configuration") || strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
			t.Errorf("payment on a memory stream: %v\n%s", err, out)
		}
	})
	for _, tc := range []struct {
		name string
		cfg  jetstream.ConsumerConfig
		want string
	}{
		{"ephemeral", jetstream.ConsumerConfig{Name: "unsafe_v1_a_do", InactiveThreshold: 5 * time.Second, AckPolicy: jetstream.AckExplicitPolicy}, "not durable"},
		{"ack none", jetstream.ConsumerConfig{Durable: "unsafe_v1_a_do", AckPolicy: jetstream.AckNonePolicy}, "acknowledges with policy"},
		{"push", jetstream.ConsumerConfig{Durable: "unsafe_v1_a_do", DeliverSubject: "somewhere", AckPolicy: jetstream.AckExplicitPolicy}, "push consumer"},
	} {
		t.Run("consumer "+tc.name, func(t *testing.T) {
			srv := sagatest.NewServer(t)
			c := srv.Client()
			_, js := srv.Connect()
			if _, err := js.CreateConsumer(ctx, access.StreamName, tc.cfg); err != nil {
				t.Fatal(err)
			}
			a := saga.NewStep[limIn, limMid]("a")
			saga.MustDefine[limIn]("unsafe", 1, a)
			r, _ := saga.NewRunner(c)
			_ = saga.Handle(r, a, func(_ context.Context, in limIn) (limMid, error) { return limMid(in), nil }, nil)
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err := r.Run(rctx)
			if !errors.Is(err, saga.ErrUnsafeConfig) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nats consumer rm") {
				t.Errorf("runner over a %s consumer: %v", tc.name, err)
			}
		})
	}
	t.Run("events consumer not durable", func(t *testing.T) {
		srv := sagatest.NewServer(t)
		_, js := srv.Connect()
		bus, err := events.New(ctx, js)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateConsumer(ctx, events.Stream, jetstream.ConsumerConfig{Name: events.ConsumerName("mail", "order.confirmed"), InactiveThreshold: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
		sub, err := bus.Subscriber("mail")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sub.Subscribe(ctx, "order.confirmed"); !errors.Is(err, events.ErrUnsafeConfig) {
			t.Errorf("events subscriber over an ephemeral consumer: %v", err)
		}
	})
}
