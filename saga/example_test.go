package saga_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
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
	charge := saga.NewStep[PlaceOrder, CardCharged]("charge", saga.Owner("payment"), saga.Undo("refund"))
	reserve := saga.NewStep[CardCharged, ItemReserved]("reserve", saga.Owner("inventory"), saga.Undo("release"))
	invoice := saga.NewStep[CardCharged, ItemReserved]("invoice", saga.Owner("billing"), saga.Undo("void"))
	confirm := saga.NewStep[PlaceOrder, Emailed]("confirm", saga.Owner("order"), saga.Pivot())
	flow, err := saga.Define[PlaceOrder]("order", 1,
		charge,
		saga.Parallel(reserve, invoice), // both run, then the next step
		confirm,
		saga.Deadline(time.Minute), // a broker-side timer
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	info := flow.Describe()
	fmt.Println(info.Name, info.Version, info.Deadline)
	for _, s := range info.Steps {
		fmt.Printf("%d %s %s owner=%s undo=%q\n", s.Position, s.Name, s.Kind, s.Owner, s.Undo)
	}

	// The compiler checks the payloads; Define checks that they chain.
	_, err = saga.Define[PlaceOrder]("broken", 1, saga.NewStep[PlaceOrder, CardCharged]("a"), saga.NewStep[Emailed, Emailed]("b"))
	fmt.Println(errors.Is(err, saga.ErrInvalidFlow))
	// Output:
	// order 1 1m0s
	// 0 charge compensatable owner=payment undo="refund"
	// 1 reserve compensatable owner=inventory undo="release"
	// 1 invoice compensatable owner=billing undo="void"
	// 2 confirm pivot owner=order undo=""
	// true
}

// A service binds the steps it owns and runs them; here one process owns
// them all. The second saga's reservation fails, so its charge is refunded.
func ExampleHandle() {
	srv, err := sagatest.StartServer() // in a test: sagatest.NewServer(t)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	_, js := srv.Connect()
	ctx := context.Background()

	charge := saga.NewStep[PlaceOrder, CardCharged]("charge")
	reserve := saga.NewStep[CardCharged, ItemReserved]("reserve", saga.Pivot())
	flow := saga.MustDefine[PlaceOrder]("shop", 1, charge, reserve)

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

	_ = saga.Start(ctx, c, flow, "o1", PlaceOrder{OrderID: "o1", SKU: "mug"})
	_ = saga.Start(ctx, c, flow, "o2", PlaceOrder{OrderID: "o2", SKU: "sold-out"})
	// o2 first: its refund is printed before it ends, whenever o1 ends.
	for _, id := range []string{"o2", "o1"} {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		st, err := sagatest.Wait(wctx, c, flow, id) // until it ends
		cancel()
		if err != nil {
			fmt.Println(err)
			return
		}
		evs, _ := c.Timeline(ctx, flow, id)
		fmt.Println(id, st.Status, evs)
	}
	// Output:
	// refund pay-o2
	// o2 compensated [_saga:start charge:done reserve:failed charge:compensated]
	// o1 completed [_saga:start charge:done reserve:done]
}

// Every saga's state can be queried: its status and each step's.
func ExampleClient_Get() {
	srv, err := sagatest.StartServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	ctx := context.Background()

	pay := saga.NewStep[PlaceOrder, CardCharged]("pay", saga.WithRetry(saga.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond}))
	flow := saga.MustDefine[PlaceOrder]("billing", 1, pay)
	c := srv.Client()
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

	_ = saga.Start(ctx, c, flow, "b1", PlaceOrder{OrderID: "b1"})
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	st, err := sagatest.Wait(wctx, c, flow, "b1", saga.StatusCompleted)
	if err != nil {
		fmt.Println(err)
		return
	}
	step := st.Step("pay")
	fmt.Println(st.Status, step.Name, step.Status, step.Attempts)
	_, err = c.Get(ctx, flow, "unknown")
	fmt.Println(errors.Is(err, saga.ErrNotFound))
	// Output:
	// completed pay completed 3
	// true
}

// A step reads what it needs: a seat choice inserted between the flight
// and the hotel has a result of its own, the hotel still takes the
// flight's (InputFrom), and the last step takes the trip itself
// (FlowInput). No step has to pass on a payload it does not use.
func ExampleInputFrom() {
	type (
		Trip         struct{ Who string }
		FlightBooked struct{ Who, Flight string }
		SeatChosen   struct{ Seat string }
		HotelBooked  struct{ Hotel string }
		Mailed       struct{ To string }
	)
	flight := saga.NewStep[Trip, FlightBooked]("flight")
	seat := saga.NewStep[FlightBooked, SeatChosen]("seat") // right after flight: takes its result
	hotel := saga.NewStep[FlightBooked, HotelBooked]("hotel", saga.InputFrom(flight), saga.Pivot())
	mail := saga.NewStep[Trip, Mailed]("mail", saga.FlowInput(), saga.Retriable())

	saga.MustDefine[Trip]("trip", 1, flight, hotel) // version 1, in flight while v2 rolls out
	v2, err := saga.Define[Trip]("trip", 2, flight, seat, hotel, mail)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range v2.Describe().Steps {
		fmt.Printf("%s takes %q\n", s.Name, s.InputFrom) // "" is the chain's
	}
	// Define checks what InputFrom names: here a step that comes later.
	early := saga.NewStep[HotelBooked, SeatChosen]("early", saga.InputFrom(hotel))
	_, err = saga.Define[Trip]("trip", 3, flight, early, hotel)
	fmt.Println(err)

	srv, err := sagatest.StartServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	ctx := context.Background()
	c := srv.Client()
	r, _ := saga.NewRunner(c)
	_ = errors.Join(
		saga.Handle(r, flight, func(_ context.Context, t Trip) (FlightBooked, error) {
			return FlightBooked{Who: t.Who, Flight: "LH1"}, nil
		}, func(context.Context, Trip, FlightBooked) error { return nil }),
		saga.Handle(r, seat, func(_ context.Context, f FlightBooked) (SeatChosen, error) {
			return SeatChosen{Seat: "12A"}, nil
		}, func(context.Context, FlightBooked, SeatChosen) error { return nil }),
		saga.Handle(r, hotel, func(_ context.Context, f FlightBooked) (HotelBooked, error) {
			fmt.Println("hotel for", f.Who, "on", f.Flight)
			return HotelBooked{Hotel: "Ritz"}, nil
		}, nil),
		saga.Handle(r, mail, func(_ context.Context, t Trip) (Mailed, error) {
			fmt.Println("mail to", t.Who)
			return Mailed{To: t.Who}, nil
		}, nil),
	)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { cancel(); <-done }()
	<-r.Ready()

	_ = saga.Start(ctx, c, v2, "t1", Trip{Who: "ada"})
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	st, err := sagatest.Wait(wctx, c, v2, "t1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(st.Status)
	// Output:
	// flight takes ""
	// seat takes ""
	// hotel takes "flight"
	// mail takes "_flow"
	// saga: invalid flow: flow "trip": step "early" takes its input from step "hotel", which does not come before it: InputFrom names a step at an earlier position
	// hotel for ada on LH1
	// mail to ada
	// completed
}

// A saga started for later is recorded at once, as scheduled; a broker-side
// schedule begins it then on a runner of its flow, and an operator may
// cancel it before (ops.Client.Cancel).
func ExampleAfter() {
	srv, err := sagatest.StartServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	ctx := context.Background()
	remind := saga.NewStep[PlaceOrder, Emailed]("remind", saga.Owner("mail"))
	flow := saga.MustDefine[PlaceOrder]("reminder", 1, remind)
	c := srv.Client()

	if err := saga.Start(ctx, c, flow, "r1", PlaceOrder{OrderID: "o-7"}, saga.After(24*time.Hour)); err != nil {
		fmt.Println(err)
		return
	}
	st, _ := c.Get(ctx, flow, "r1")
	fmt.Println(st.Status, st.Step("remind").Status, st.Scheduled.Sub(st.StartedAt))
	// Output:
	// scheduled pending 24h0m0s
}

// Basket is what the example's sagas start with.
type Basket struct {
	Customer string
	Total    float64
}

// A flow declares search attributes; Find selects its sagas by them from
// the search index, reading only those that match.
func ExampleClient_Find() {
	srv, err := sagatest.StartServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	_, js := srv.Connect()
	ctx := context.Background()
	c, err := saga.New(ctx, js)
	if err != nil {
		fmt.Println(err)
		return
	}
	flow := saga.MustDefine[Basket]("checkout", 1,
		saga.NewStep[Basket, Basket]("pay"),
		saga.Attr("customer", func(b Basket) string { return b.Customer }),
		saga.NumberAttr("total", func(b Basket) float64 { return b.Total }))
	for id, b := range map[string]Basket{"k1": {"c-1", 50}, "k2": {"c-1", 150}, "k3": {"c-2", 300}} {
		if err := saga.Start(ctx, c, flow, id, b); err != nil {
			fmt.Println(err)
			return
		}
	}
	var filter saga.Filter
	for _, s := range []string{"customer=c-1", "total>100"} {
		cond, err := saga.ParseCond(s)
		if err != nil {
			fmt.Println(err)
			return
		}
		filter.Where = append(filter.Where, cond)
	}
	found, err := c.Find(ctx, flow, filter)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, st := range found {
		fmt.Println(st.ID, st.Status, st.Attrs["customer"], st.Attrs["total"])
	}
	st, _ := c.Get(ctx, flow, "k3")
	fmt.Println(st.Attrs)
	// Output:
	// k2 running c-1 150
	// map[customer:c-2 total:300]
}
