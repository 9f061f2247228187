package saga_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// Version 2 of the user's trip (usertrip_test.go) inserts a seat choice
// between the flight and the hotel, as package saga's doc says ("Inserting
// a step"): the hotel takes the flight's Booking, so the seat step takes a
// Booking and passes it on, with the seat in it. Defining it here changes
// nothing for TestTripV1BooksAFlightAndAHotel, which starts TripV1.
var (
	ChooseSeat = saga.NewStep[Booking, Booking]("seat", saga.Undo("release-seat"))
	TripV2     = saga.MustDefine[TripRequest]("usertrip", 2, Flight, ChooseSeat, Hotel)
)

func TestTripV2ChoosesASeat(t *testing.T) {
	srv := sagatest.NewServer(t)
	c := srv.Client()
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	bindTrip(t, r)
	err = saga.Handle(r, ChooseSeat, func(_ context.Context, in Booking) (Booking, error) {
		in.Seat = "12A"
		return in, nil
	}, func(context.Context, Booking, Booking) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	ctx := context.Background()
	if err := saga.Start(ctx, c, TripV2, "t2", TripRequest{Who: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := saga.Start(ctx, c, TripV1, "t1", TripRequest{Who: "ada"}); err != nil {
		t.Fatal(err)
	}
	st2 := sagatest.AwaitStatus(t, c, TripV2, "t2", 20*time.Second, saga.StatusCompleted)
	st1 := sagatest.AwaitStatus(t, c, TripV1, "t1", 20*time.Second, saga.StatusCompleted)
	if st2.Version != 2 || st2.Step("seat") == nil || st1.Version != 1 || st1.Step("seat") != nil {
		t.Errorf("each start runs the version it names: t2 on v%d %+v, t1 on v%d %+v", st2.Version, st2.Steps, st1.Version, st1.Steps)
	}
}

// Inserting a step that takes the flight's result but gives something
// else is refused, and the error says how to insert a step.
func TestInsertingAStepOfAnotherTypeSaysHow(t *testing.T) {
	seatNo := saga.NewStep[Booking, string]("seat-number")
	_, err := saga.Define[TripRequest]("usertrip-insert", 1, saga.NewStep[TripRequest, Booking]("flight"), seatNo, saga.NewStep[Booking, Booking]("hotel"))
	if !errors.Is(err, saga.ErrInvalidFlow) {
		t.Fatalf("a step given another step's result type: %v", err)
	}
	for _, want := range []string{`"hotel" takes saga_test.Booking but is given string`, "insert", "saga.InputFrom"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Define says %q; want it to say %q", err, want)
		}
	}
}
