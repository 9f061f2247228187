package sagatest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
)

type Trip struct{ Traveller string }
type Booking struct{ Ref string }

// A sweep aborts each step of a flow in turn, with the handlers the
// services really bind, and checks that what was done is undone: here the
// hotel is cancelled when the flight cannot be booked. In a test, call
// sagatest.RunSweep(t, sweep) instead: one subtest per step.
func ExampleSweep() {
	hotel := saga.NewStep[Trip, Booking]("hotel", saga.Owner("hotels"), saga.Undo("cancel"))
	flight := saga.NewStep[Booking, Booking]("flight", saga.Owner("flights"), saga.Pivot())
	trip := saga.MustDefine[Trip]("trip", 1, hotel, flight)

	sweep := sagatest.Sweep[Trip]{
		Flow:  trip,
		Input: Trip{Traveller: "ada"},
		Bind: func(r *saga.Runner) error {
			return errors.Join(
				saga.Handle(r, hotel,
					func(ctx context.Context, t Trip) (Booking, error) { return Booking{Ref: "h-" + t.Traveller}, nil },
					func(ctx context.Context, t Trip, b Booking) error { return nil }), // cancel b.Ref
				saga.Handle(r, flight,
					func(ctx context.Context, b Booking) (Booking, error) { return Booking{Ref: "f-1"}, nil }, nil),
			)
		},
	}
	runs, err := sweep.Run(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, run := range runs {
		fmt.Printf("%s aborts: %s, compensated %v, problems %d\n", run.Aborted, run.Status, run.Compensated, len(run.Problems))
	}
	// Output:
	// hotel aborts: compensated, compensated [], problems 0
	// flight aborts: compensated, compensated [hotel], problems 0
}
