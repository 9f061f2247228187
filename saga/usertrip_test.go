package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// A new user's first saga, as written before any second version existed
// (issue 20): a trip books a flight, then a hotel. Version 2 is defined
// beside it, in the same package (usertrip_v2_test.go); this file and
// its test are unchanged by it, and must still pass.

type (
	TripRequest struct{ Who string }
	Booking     struct{ Who, Flight, Seat, Hotel string }
)

var (
	Flight = saga.NewStep[TripRequest, Booking]("flight", saga.Undo("cancel-flight"))
	Hotel  = saga.NewStep[Booking, Booking]("hotel", saga.Pivot())
	TripV1 = saga.MustDefine[TripRequest]("usertrip", 1, Flight, Hotel)
)

// bindTrip binds the steps version 1 has: the flight and the hotel.
func bindTrip(t *testing.T, r *saga.Runner) {
	t.Helper()
	err := saga.Handle(r, Flight, func(_ context.Context, in TripRequest) (Booking, error) {
		return Booking{Who: in.Who, Flight: "LH1"}, nil
	}, func(context.Context, TripRequest, Booking) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	err = saga.Handle(r, Hotel, func(_ context.Context, in Booking) (Booking, error) {
		in.Hotel = "Ritz"
		return in, nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

func TestTripV1BooksAFlightAndAHotel(t *testing.T) {
	srv := sagatest.NewServer(t)
	c := srv.Client()
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	bindTrip(t, r)
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), c, TripV1, "t1", TripRequest{Who: "ada"}); err != nil {
		t.Fatal(err)
	}
	st := sagatest.AwaitStatus(t, c, TripV1, "t1", 20*time.Second, saga.StatusCompleted)
	if st.Version != 1 || len(st.Steps) != 2 {
		t.Errorf("trip on v%d with steps %+v; want v1: flight, hotel", st.Version, st.Steps)
	}
}
