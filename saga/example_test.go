package saga_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
)

// Payload types are plain structs, encoded as JSON.
type (
	PlaceOrder   struct{ OrderID, SKU string }
	CardCharged  struct{ PaymentID string }
	ItemReserved struct{ ReservationID string }
	Emailed      struct{ To string }
)

// A flow is shared code: every service that takes part compiles it in.
func ExampleDefine() {
	charge := saga.NewStep[PlaceOrder, CardCharged]("charge")
	reserve := saga.NewStep[CardCharged, ItemReserved]("reserve")
	invoice := saga.NewStep[CardCharged, ItemReserved]("invoice")
	confirm := saga.NewStep[PlaceOrder, Emailed]("confirm", saga.Pivot())
	flow, err := saga.Define("order", 1,
		charge,
		saga.Parallel(reserve, invoice), // both run, then the next step
		confirm,
		saga.Deadline(time.Minute), // a broker-side timer
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(flow.Name(), flow.Version(), flow.Steps(), flow.Deadline())

	// The compiler checks the payloads; Define checks that they chain.
	_, err = saga.Define("broken", 1, saga.NewStep[PlaceOrder, CardCharged]("a"), saga.NewStep[Emailed, Emailed]("b"))
	fmt.Println(errors.Is(err, saga.ErrInvalidFlow))
	// Output:
	// order 1 [[charge] [reserve invoice] [confirm]] 1m0s
	// true
}

// A service binds the steps it owns and runs them; here one process owns
// them all. The second saga's reservation fails, so its charge is refunded.
func ExampleHandle() {
	js, stop := exampleJetStream()
	defer stop()
	ctx := context.Background()

	charge := saga.NewStep[PlaceOrder, CardCharged]("charge")
	reserve := saga.NewStep[CardCharged, ItemReserved]("reserve", saga.Pivot())
	flow := saga.MustDefine("shop", 1, charge, reserve)

	c, err := saga.New(ctx, js)
	if err != nil {
		fmt.Println(err)
		return
	}
	r, _ := saga.NewRunner(c)
	_ = saga.Handle(r, charge,
		func(ctx context.Context, o PlaceOrder) (CardCharged, error) {
			return CardCharged{PaymentID: "pay-" + o.OrderID}, nil
		},
		func(ctx context.Context, o PlaceOrder, p CardCharged) error {
			fmt.Println("refund", p.PaymentID)
			return nil
		})
	_ = saga.Handle(r, reserve, func(ctx context.Context, p CardCharged) (ItemReserved, error) {
		o, err := saga.InputOf[PlaceOrder](ctx)
		if err != nil {
			return ItemReserved{}, err // retried
		}
		if o.SKU == "sold-out" {
			return ItemReserved{}, saga.Abortf("%s is sold out", o.SKU) // compensates
		}
		return ItemReserved{ReservationID: "res-" + o.OrderID}, nil
	}, nil)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { cancel(); <-done }()
	<-r.Ready()

	_ = c.Start(ctx, flow, "o1", PlaceOrder{OrderID: "o1", SKU: "mug"})
	_ = c.Start(ctx, flow, "o2", PlaceOrder{OrderID: "o2", SKU: "sold-out"})
	for _, id := range []string{"o1", "o2"} {
		st := waitTerminal(c, "shop", id)
		evs, _ := c.Timeline(ctx, "shop", id)
		fmt.Println(id, st.Status, evs)
	}
	// Output:
	// refund pay-o2
	// o1 completed [_saga:start charge:done reserve:done]
	// o2 compensated [_saga:start charge:done reserve:failed charge:compensated]
}

// Every saga's state can be queried: its status and each step's.
func ExampleClient_Get() {
	js, stop := exampleJetStream()
	defer stop()
	ctx := context.Background()

	pay := saga.NewStep[PlaceOrder, CardCharged]("pay", saga.WithRetry(saga.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond}))
	flow := saga.MustDefine("billing", 1, pay)
	c, _ := saga.New(ctx, js)
	r, _ := saga.NewRunner(c)
	_ = saga.Handle(r, pay, func(ctx context.Context, o PlaceOrder) (CardCharged, error) {
		if info, _ := saga.InfoFrom(ctx); info.Attempt < 3 {
			return CardCharged{}, errors.New("card network busy") // a plain error: retried
		}
		return CardCharged{PaymentID: "pay-1"}, nil
	}, func(context.Context, PlaceOrder, CardCharged) error { return nil })
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { cancel(); <-done }()
	<-r.Ready()

	_ = c.Start(ctx, flow, "b1", PlaceOrder{OrderID: "b1"})
	st := waitTerminal(c, "billing", "b1")
	step := st.Step("pay")
	fmt.Println(st.Status, step.Name, step.Status, step.Attempts)
	_, err := c.Get(ctx, "billing", "unknown")
	fmt.Println(errors.Is(err, saga.ErrNotFound))
	// Output:
	// completed pay completed 3
	// true
}

// exampleJetStream starts an embedded nats-server, as sagatest does for
// tests, and returns a JetStream context and a stop function.
func exampleJetStream() (jetstream.JetStream, func()) {
	dir, _ := os.MkdirTemp("", "choreo-example-")
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		panic(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		panic("nats-server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		panic(err)
	}
	js, _ := jetstream.New(nc)
	return js, func() { nc.Close(); s.Shutdown(); os.RemoveAll(dir) }
}

func waitTerminal(c *saga.Client, flow, id string) *saga.State {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := c.Get(context.Background(), flow, id); err == nil && st.Status.Terminal() {
			return st
		}
		time.Sleep(5 * time.Millisecond)
	}
	panic("saga " + id + " did not finish")
}
