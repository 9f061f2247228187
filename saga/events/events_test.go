package events_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/saga/sagatest"
)

type CustomerRegistered struct {
	ID      string `json:"id"`
	Country string `json:"country"`
}

type fixture struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	bus *events.Bus
}

func newFixture(t *testing.T, opts ...events.Option) *fixture {
	t.Helper()
	srv := sagatest.NewServer(t)
	nc, js := srv.Connect()
	bus, err := events.New(context.Background(), js, append([]events.Option{events.WithAckWait(time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{nc: nc, js: js, bus: bus}
}

// runRouter runs r until the test ends; stop closes it.
func runRouter(t *testing.T, r *message.Router) (stop func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.Background()) }()
	select {
	case <-r.Running():
	case err := <-errc:
		t.Fatalf("router: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := r.Close(); err != nil {
				t.Errorf("router close: %v", err)
			}
			<-errc
		})
	}
	t.Cleanup(stop)
	return stop
}

// replica is a service's local copy of customers, built from events.
type replica struct {
	mu   sync.Mutex
	seen map[string]int
}

func (r *replica) handle(_ context.Context, c CustomerRegistered) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]int{}
	}
	r.seen[c.ID]++
	return nil
}

func (r *replica) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[id]
}

func (r *replica) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func (f *fixture) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	s, err := f.js.Stream(context.Background(), events.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestPublisherDeduplicatesByUUID(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for range 3 { // a publish retried after a lost acknowledgement
		if err := events.Publish(ctx, f.bus, "customer.registered", "cust-1", CustomerRegistered{ID: "c1"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.streamMsgs(t); n != 1 {
		t.Errorf("stored %d events, want 1", n)
	}
}

func TestPublisherPipelinesABatch(t *testing.T) {
	f := newFixture(t)
	// While the batch is published, watch how many publishes await their
	// PubAck: one round trip per message never has more than one.
	var maxPending atomic.Int64
	done := make(chan struct{})
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		for {
			select {
			case <-done:
				return
			default:
			}
			if n := int64(f.js.PublishAsyncPending()); n > maxPending.Load() {
				maxPending.Store(n)
			}
		}
	}()
	const n = 2000
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(fmt.Sprintf("b-%d", i), []byte(`{}`))
	}
	err := f.bus.Publisher().Publish("batch", msgs...)
	close(done)
	<-watching
	if err != nil {
		t.Fatal(err)
	}
	if got := f.streamMsgs(t); got != n {
		t.Fatalf("stored %d, want %d", got, n)
	}
	if maxPending.Load() < 2 {
		t.Errorf("publishes were not pipelined (at most %d awaiting a PubAck)", maxPending.Load())
	}
	t.Logf("up to %d publishes in flight", maxPending.Load())
	// Order within the batch is kept.
	s, _ := f.js.Stream(context.Background(), events.Stream)
	first, _ := s.GetMsg(context.Background(), 1)
	last, _ := s.GetMsg(context.Background(), n)
	if first.Header.Get(nats.MsgIdHdr) != "b-0" || last.Header.Get(nats.MsgIdHdr) != fmt.Sprintf("b-%d", n-1) {
		t.Errorf("order: first %q last %q", first.Header.Get(nats.MsgIdHdr), last.Header.Get(nats.MsgIdHdr))
	}
}

func TestConsumersAreDurableAndSurviveADowntime(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var rep replica
	r, _ := f.bus.NewRouter()
	if err := events.Handle(r, f.bus, "shipping", "customer.registered", rep.handle); err != nil {
		t.Fatal(err)
	}
	stop := runRouter(t, r)
	_ = events.Publish(ctx, f.bus, "customer.registered", "e1", CustomerRegistered{ID: "c1"})
	sagatest.Poll(t, 10*time.Second, func() bool { return rep.count("c1") == 1 }, func() string { return "c1 not replicated" })

	cons, err := f.js.Consumer(ctx, events.Stream, events.ConsumerName("shipping", "customer.registered"))
	if err != nil {
		t.Fatal(err)
	}
	if info := cons.CachedInfo(); info.Config.Durable != "shipping__customer_registered" || info.Config.AckPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("consumer config %+v", info.Config)
	}

	stop() // the service goes down; events keep coming
	for i := 2; i <= 4; i++ {
		_ = events.Publish(ctx, f.bus, "customer.registered", fmt.Sprintf("e%d", i), CustomerRegistered{ID: fmt.Sprintf("c%d", i)})
	}
	if !f.nc.IsConnected() {
		t.Fatal("closing the router closed the caller's connection")
	}
	r2, _ := f.bus.NewRouter()
	_ = events.Handle(r2, f.bus, "shipping", "customer.registered", rep.handle)
	runRouter(t, r2)
	sagatest.Poll(t, 10*time.Second, func() bool { return rep.size() == 4 }, func() string { return fmt.Sprintf("replica has %d customers", rep.size()) })
	if rep.count("c1") != 1 {
		t.Errorf("c1 applied %d times", rep.count("c1"))
	}
}

func TestGroupsEachGetEveryEventInstancesShare(t *testing.T) {
	f := newFixture(t)
	var shipping, notify replica
	var perInstance [2]atomic.Int64
	for i := range 2 {
		r, _ := f.bus.NewRouter()
		_ = events.Handle(r, f.bus, "shipping", "customer.registered", func(ctx context.Context, c CustomerRegistered) error {
			perInstance[i].Add(1)
			return shipping.handle(ctx, c)
		})
		runRouter(t, r)
	}
	r, _ := f.bus.NewRouter()
	_ = events.Handle(r, f.bus, "notification", "customer.registered", notify.handle)
	runRouter(t, r)
	const n = 60
	for i := range n {
		_ = events.Publish(context.Background(), f.bus, "customer.registered", fmt.Sprintf("e%d", i), CustomerRegistered{ID: fmt.Sprintf("c%d", i)})
	}
	sagatest.Poll(t, 15*time.Second, func() bool { return shipping.size() == n && notify.size() == n },
		func() string { return fmt.Sprintf("shipping %d notification %d", shipping.size(), notify.size()) })
	for i := range n {
		id := fmt.Sprintf("c%d", i)
		if shipping.count(id) != 1 || notify.count(id) != 1 {
			t.Errorf("%s: shipping %d notification %d", id, shipping.count(id), notify.count(id))
		}
	}
	t.Logf("shipping instances handled %d and %d", perInstance[0].Load(), perInstance[1].Load())
}

func TestPoisonIsDeadLetteredAndOthersGoOn(t *testing.T) {
	f := newFixture(t)
	var rep replica
	r, _ := f.bus.NewRouter()
	_ = events.Handle(r, f.bus, "shipping", "customer.registered", rep.handle)
	runRouter(t, r)

	// A repeated header: watermill-nats's own unmarshaler rejects it and its
	// subscriber then dereferences a nil message.
	m := nats.NewMsg("events.customer.registered")
	m.Header.Add("ce-type", "customer.registered")
	m.Header.Add("ce-type", "something.else")
	m.Header.Set(nats.MsgIdHdr, "twice")
	m.Data = []byte(`{"id":"bad1"}`)
	if _, err := f.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	// A payload that is not the event.
	if _, err := f.js.Publish(context.Background(), "events.customer.registered", []byte("not json"), jetstream.WithMsgID("notjson")); err != nil {
		t.Fatal(err)
	}
	// An event larger than the limit (512 KiB by default), however well formed.
	big := fmt.Appendf(nil, `{"id":"big","name":%q}`, strings.Repeat("x", 600<<10))
	if _, err := f.js.Publish(context.Background(), "events.customer.registered", big, jetstream.WithMsgID("big")); err != nil {
		t.Fatal(err)
	}
	_ = events.Publish(context.Background(), f.bus, "customer.registered", "good", CustomerRegistered{ID: "good"})

	sagatest.Poll(t, 10*time.Second, func() bool { return rep.count("good") == 1 }, func() string { return "the good event after the poison was not handled" })
	var dls []events.DeadLetter
	sagatest.Poll(t, 10*time.Second, func() bool {
		dls, _ = f.bus.DeadLetters(context.Background())
		return len(dls) == 3
	}, func() string { return fmt.Sprintf("dead letters: %+v", dls) })
	var reasons []string
	for _, d := range dls {
		reasons = append(reasons, d.Reason)
	}
	all := strings.Join(reasons, " | ")
	for _, want := range []string{"repeated header ce-type", "undecodable payload", "oversize: 614"} {
		if !strings.Contains(all, want) {
			t.Errorf("no dead letter says %q: %q", want, all)
		}
	}
	if rep.count("bad1") != 0 || rep.count("big") != 0 {
		t.Error("a poisoned event was applied")
	}
}

func TestTransientHandlerErrorsAreRetried(t *testing.T) {
	f := newFixture(t)
	var calls atomic.Int64
	var rep replica
	r, _ := f.bus.NewRouter()
	_ = events.Handle(r, f.bus, "billing", "customer.registered", func(ctx context.Context, c CustomerRegistered) error {
		if calls.Add(1) < 3 {
			return errors.New("database busy")
		}
		return rep.handle(ctx, c)
	})
	runRouter(t, r)
	_ = events.Publish(context.Background(), f.bus, "customer.registered", "e1", CustomerRegistered{ID: "c1"})
	sagatest.Poll(t, 10*time.Second, func() bool { return rep.count("c1") == 1 }, func() string { return "not applied" })
	if dls, _ := f.bus.DeadLetters(context.Background()); len(dls) != 0 {
		t.Errorf("dead letters %+v", dls)
	}
}

func TestSlowHandlerIsNotLost(t *testing.T) {
	f := newFixture(t, events.WithAckWait(300*time.Millisecond))
	var rep replica
	r, _ := f.bus.NewRouter()
	_ = events.Handle(r, f.bus, "slow", "customer.registered", func(ctx context.Context, c CustomerRegistered) error {
		time.Sleep(time.Second) // three ack waits
		return rep.handle(ctx, c)
	})
	runRouter(t, r)
	_ = events.Publish(context.Background(), f.bus, "customer.registered", "e1", CustomerRegistered{ID: "c1"})
	sagatest.Poll(t, 10*time.Second, func() bool { return rep.count("c1") >= 1 }, func() string { return "lost" })
	cons, _ := f.js.Consumer(context.Background(), events.Stream, events.ConsumerName("slow", "customer.registered"))
	sagatest.Poll(t, 10*time.Second, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}, func() string { return "not acknowledged" })
	if n := rep.count("c1"); n != 1 {
		t.Errorf("handled %d times: progress acks should prevent a redelivery", n)
	}
}

func TestCloseUnderLoadNeitherPanicsNorClosesTheConnection(t *testing.T) {
	f := newFixture(t)
	var rep replica
	for round := range 5 {
		r, _ := f.bus.NewRouter()
		_ = events.Handle(r, f.bus, "churn", "customer.registered", rep.handle)
		stop := runRouter(t, r)
		msgs := make([]*message.Message, 50)
		for i := range msgs {
			msgs[i] = message.NewMessage(fmt.Sprintf("r%d-%d", round, i), fmt.Appendf(nil, `{"id":"r%d-%d"}`, round, i))
		}
		go func() { _ = f.bus.Publisher().Publish("customer.registered", msgs...) }()
		stop() // while events arrive
	}
	if !f.nc.IsConnected() {
		t.Fatal("connection closed")
	}
	r, _ := f.bus.NewRouter()
	_ = events.Handle(r, f.bus, "churn", "customer.registered", rep.handle)
	runRouter(t, r)
	sagatest.Poll(t, 15*time.Second, func() bool { return rep.size() == 250 }, func() string { return fmt.Sprintf("%d of 250 applied", rep.size()) })
}

func TestBadOptions(t *testing.T) {
	f := newFixture(t)
	if _, err := f.bus.Subscriber("a.b"); !errors.Is(err, events.ErrInvalidOption) {
		t.Errorf("group with a dot: %v", err)
	}
	if err := f.bus.Publisher().Publish("bad topic", message.NewMessage("x", nil)); !errors.Is(err, events.ErrInvalidOption) {
		t.Errorf("topic with a space: %v", err)
	}
	if _, err := events.New(context.Background(), f.js, events.WithReplicas(2)); !errors.Is(err, events.ErrInvalidOption) {
		t.Errorf("replicas 2: %v", err)
	}
	if _, err := events.New(context.Background(), f.js, events.WithMaxEventSize(10)); !errors.Is(err, events.ErrInvalidOption) {
		t.Errorf("max event size 10: %v", err)
	}
}

func TestEachGroupDeadLettersItsOwnCopy(t *testing.T) {
	f := newFixture(t)
	for _, group := range []string{"shipping", "notification"} {
		r, _ := f.bus.NewRouter()
		_ = events.Handle(r, f.bus, group, "customer.registered", func(context.Context, CustomerRegistered) error {
			return saga.Abort(errors.New(group + " refuses"))
		})
		runRouter(t, r)
	}
	_ = events.Publish(context.Background(), f.bus, "customer.registered", "e1", CustomerRegistered{ID: "c1"})
	var dls []events.DeadLetter
	sagatest.Poll(t, 10*time.Second, func() bool {
		dls, _ = f.bus.DeadLetters(context.Background())
		return len(dls) == 2
	}, func() string { return fmt.Sprintf("dead letters %+v", dls) })
	if reasons := dls[0].Reason + dls[1].Reason; !strings.Contains(reasons, "shipping refuses") || !strings.Contains(reasons, "notification refuses") {
		t.Errorf("reasons %q", reasons)
	}
}

// A dead letter never amplifies: an oversize event with a flood of
// metadata is dead-lettered as its size, its hash, the router's reason and
// a bounded part of its payload and metadata; both streams have limits.
func TestDeadLettersAreBounded(t *testing.T) {
	f := newFixture(t)
	r, _ := f.bus.NewRouter()
	var rep replica
	_ = events.Handle(r, f.bus, "shipping", "customer.registered", rep.handle)
	runRouter(t, r)

	m := nats.NewMsg("events.customer.registered")
	for i := range 100 {
		m.Header.Set(fmt.Sprintf("x-flood-%03d", i), strings.Repeat("h", 500))
	}
	m.Header.Set(nats.MsgIdHdr, "flood")
	m.Data = fmt.Appendf(nil, `{"id":"flood","name":%q}`, strings.Repeat("x", 600<<10))
	if _, err := f.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	var dls []events.DeadLetter
	sagatest.Poll(t, 10*time.Second, func() bool {
		dls, _ = f.bus.DeadLetters(context.Background())
		return len(dls) == 1
	}, func() string { return fmt.Sprintf("dead letters: %+v", dls) })
	d := dls[0]
	sum := sha256.Sum256(m.Data)
	if d.Size != len(m.Data) || d.Hash != "sha256:"+hex.EncodeToString(sum[:]) || !strings.Contains(d.Reason, "oversize") {
		t.Errorf("dead letter: size %d hash %s reason %q; want %d, the payload's hash, oversize", d.Size, d.Hash, d.Reason, len(m.Data))
	}
	if len(d.Message.Payload) > 16<<10 || len(d.Message.Metadata) > 64+2+8 { // and the publisher's CloudEvents headers
		t.Errorf("dead letter keeps %d bytes of payload and %d metadata values", len(d.Message.Payload), len(d.Message.Metadata))
	}
	for name, want := range map[string]struct {
		maxBytes int64
		maxMsg   int32
	}{events.Stream: {10 << 30, 1 << 20}, events.DeadLetterStream: {1 << 30, 256 << 10}} {
		s, err := f.js.Stream(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if c := info.Config; c.MaxBytes != want.maxBytes || c.MaxMsgSize != want.maxMsg || c.Discard != jetstream.DiscardNew {
			t.Errorf("%s: max bytes %d, max message %d, discard %v", name, c.MaxBytes, c.MaxMsgSize, c.Discard)
		}
		if name == events.DeadLetterStream && info.State.Bytes > 64<<10 {
			t.Errorf("the dead letter of a %d-byte event takes %d bytes", len(m.Data), info.State.Bytes)
		}
	}
}
