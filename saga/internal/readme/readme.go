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

// Bank is the payment service's card-authentication provider (3-D Secure):
// it calls back later with the token it was given.
type Bank interface {
	Ask3DS(ctx context.Context, orderID, callbackToken string) error
}

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

// README waits begin
// A step completed later: the charge of the 3-D Secure flow waits up to 15
// minutes for the customer, in the bank's page. A broker-side timer ends
// the wait, with every process gone; the charge is then compensated.
var ChargeAfter3DS = saga.NewStep[OrderPlaced, PaymentCharged]("charge",
	saga.Owner("payment"), saga.Undo("refund"), saga.WaitsFor("customer", 15*time.Minute))

func ask3DS(ctx context.Context, bank Bank, o OrderPlaced) (PaymentCharged, error) {
	if err := bank.Ask3DS(ctx, o.OrderID, saga.CompletionToken(ctx)); err != nil {
		return PaymentCharged{}, err // retried
	}
	return saga.Later[PaymentCharged]() // the outcome comes later
}

// OnBankCallback runs in any instance of the payment service, after any
// restart: the token names the saga, the step and the attempt.
func OnBankCallback(ctx context.Context, client *saga.Client, token, paymentID, orderID string) error {
	return ChargeAfter3DS.Complete(ctx, client, token, PaymentCharged{PaymentID: paymentID, OrderID: orderID})
}

// An event wait: deliver completes when the carrier's ParcelDelivered
// event names the saga (its order_id field), or is tried again after 3 days.
type ParcelDelivered struct {
	OrderID string `json:"order_id"`
	At      time.Time
}

var Deliver = saga.NewStep[DeliveryBooked, ParcelDelivered]("deliver", saga.Owner("shipping"), saga.Retriable(),
	saga.WaitsFor("carrier", 72*time.Hour), saga.CompletesOn("parcel.delivered", "order_id"))

// README waits end

// Order3DS is the flow the waiting steps belong to.
var (
	Reserve3DS = saga.NewStep[PaymentCharged, StockReserved]("reserve3ds", saga.Owner("inventory"))
	Ship3DS    = saga.NewStep[StockReserved, DeliveryBooked]("ship3ds", saga.Owner("shipping"), saga.Pivot())
	Order3DS   = saga.MustDefine[OrderPlaced]("order3ds", 1, ChargeAfter3DS, Reserve3DS, Ship3DS, Deliver)
)

// HandlePayment3DS binds the 3-D Secure charge in runner.
func HandlePayment3DS(runner *saga.Runner, bank Bank, payments Payments) error {
	return saga.Handle(runner, ChargeAfter3DS, func(ctx context.Context, o OrderPlaced) (PaymentCharged, error) {
		return ask3DS(ctx, bank, o)
	}, func(ctx context.Context, _ OrderPlaced, p PaymentCharged) error {
		if p.PaymentID == "" {
			return nil // never confirmed: nothing was charged
		}
		return payments.Refund(ctx, p.PaymentID)
	})
}
