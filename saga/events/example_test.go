package events_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/saga/sagatest"
)

type NewCustomer struct {
	ID, Name, Country string
}

// The shipping service keeps its own copy of the customers it ships to,
// built from the customer service's events, so it keeps working while the
// customer service is down. An event it cannot take is refused with
// saga.Abort: dead-lettered at once, with the reason, and the others go on.
func Example() {
	srv, err := sagatest.StartServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	_, js := srv.Connect()
	ctx := context.Background()
	bus, err := events.New(ctx, js, events.WithSource("customer"))
	if err != nil {
		fmt.Println(err)
		return
	}

	copies := make(chan NewCustomer, 2)
	router, _ := bus.NewRouter()
	_ = events.Handle(router, bus, "shipping", "customer.registered", func(ctx context.Context, c NewCustomer) error {
		if c.Country == "" {
			return saga.Abort(errors.New("no country: cannot ship")) // not retried
		}
		copies <- c
		return nil
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- router.Run(rctx) }()
	defer func() { cancel(); <-done }()
	<-router.Running()

	// The id makes a retried publish harmless: the broker keeps one.
	_ = events.Publish(ctx, bus, "customer.registered", "c-1", NewCustomer{ID: "c-1", Name: "Ada", Country: "FR"})
	_ = events.Publish(ctx, bus, "customer.registered", "c-1", NewCustomer{ID: "c-1", Name: "Ada", Country: "FR"})
	_ = events.Publish(ctx, bus, "customer.registered", "c-2", NewCustomer{ID: "c-2", Name: "Bob"})

	fmt.Println("copied", (<-copies).Name)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if dls, _ := bus.DeadLetters(ctx); len(dls) == 1 {
			fmt.Println("dead-lettered:", dls[0].Reason)
			break
		}
	}
	select {
	case c := <-copies:
		fmt.Println("copied twice:", c.ID)
	default:
		fmt.Println("copied once")
	}
	// Output:
	// copied Ada
	// dead-lettered: no country: cannot ship
	// copied once
}
