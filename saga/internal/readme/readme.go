// Package readme holds the code the README shows, so that it compiles and
// runs: readme_test.go checks that the README's first Go block is the
// text between the markers below, and runs it.
package readme

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
)

// Payments is the payment service's own domain code.
type Payments interface {
	Charge(ctx context.Context, key, cardToken string, total int) (PaymentCharged, error)
	Refund(ctx context.Context, paymentID string) error
}

// README begin
type (
	OrderPlaced struct {
		OrderID   string
		CardToken string // the payment provider's token: a card number has no place in an event
		Total     int
	}
	PaymentCharged struct{ PaymentID, OrderID string }
	StockReserved  struct{ OrderID string }
	DeliveryBooked struct{ TrackingID string }
)

// The flow is shared code (a contract): every service compiles it in.
var (
	Charge  = saga.NewStep[OrderPlaced, PaymentCharged]("charge", saga.Owner("payment"), saga.Undo("refund"))
	Reserve = saga.NewStep[PaymentCharged, StockReserved]("reserve", saga.Owner("inventory"), saga.Undo("release"))
	Ship    = saga.NewStep[StockReserved, DeliveryBooked]("ship", saga.Owner("shipping"), saga.Pivot())
	Order   = saga.MustDefine[OrderPlaced]("order", 1, Charge, Reserve, Ship, saga.Deadline(time.Minute))
)

// RunPayment is the payment service: it runs the action of its step and
// the compensation that undoes it, until ctx ends. You own the connection.
func RunPayment(ctx context.Context, nc *nats.Conn, payments Payments) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	client, err := saga.New(ctx, js, saga.WithSource("payment")) // creates choreo's streams if missing
	if err != nil {
		return err
	}
	runner, err := saga.NewRunner(client)
	if err != nil {
		return err
	}
	err = saga.Handle(runner, Charge,
		func(ctx context.Context, o OrderPlaced) (PaymentCharged, error) {
			// A plain error is retried; saga.Abort(err), a business "no", compensates.
			return payments.Charge(ctx, saga.IdempotencyKey(ctx), o.CardToken, o.Total)
		},
		func(ctx context.Context, o OrderPlaced, p PaymentCharged) error {
			return payments.Refund(ctx, p.PaymentID)
		})
	if err != nil {
		return err
	}
	return runner.Run(ctx) // inventory and shipping bind their steps the same way
}

// PlaceOrder is the front door: it starts a saga (the compiler checks the
// input's type) and says where it stands.
func PlaceOrder(ctx context.Context, client *saga.Client, o OrderPlaced) (saga.Status, error) {
	if err := saga.Start(ctx, client, Order, o.OrderID, o); err != nil { // safe to retry
		return "", err
	}
	st, err := client.Get(ctx, Order, o.OrderID)
	if err != nil {
		return "", err
	}
	return st.Status, nil // running; then completed, or compensated with st.Reason
}

// README end
