package schemas

import (
	"time"

	"github.com/choreo-go/choreo/saga"
)

// The order saga: the card is charged; then stock is reserved, the invoice
// issued and the delivery scheduled, in parallel; then the order is
// confirmed (the pivot). A refusal anywhere undoes what was done.
var (
	// Charge is owned by the payment service; compensated by a refund.
	Charge = saga.NewStep[OrderPlaced, PaymentSucceeded]("charge",
		saga.WithRetry(saga.RetryPolicy{MaxAttempts: 5}), saga.WithTimeout(30*time.Second), saga.WithCompensationRetry(refundRetry),
		saga.Owner("payment"), saga.Undo("refund"))
	// Reserve is owned by the inventory service; compensated by a release.
	Reserve = saga.NewStep[PaymentSucceeded, StockReserved]("reserve", saga.WithTimeout(30*time.Second),
		saga.Owner("inventory"), saga.Undo("release"))
	// Invoice is owned by the billing service; compensated by a void.
	Invoice = saga.NewStep[PaymentSucceeded, InvoiceIssued]("invoice", saga.WithTimeout(30*time.Second),
		saga.Owner("billing"), saga.Undo("void"))
	// Schedule is owned by the shipping service; compensated by a cancel.
	Schedule = saga.NewStep[PaymentSucceeded, DeliveryScheduled]("schedule", saga.WithTimeout(30*time.Second),
		saga.Owner("shipping"), saga.Undo("cancel"))
	// Confirm is owned by the order service: the point of no return.
	Confirm = saga.NewStep[OrderPlaced, OrderConfirmed]("confirm", saga.Pivot(), saga.Owner("order"))

	// OrderFlow is the flow every participant compiles in.
	OrderFlow = saga.MustDefine[OrderPlaced]("order", 1,
		Charge,
		saga.Parallel(Reserve, Invoice, Schedule),
		Confirm,
		saga.Deadline(orderDeadline),
		saga.StartedBy("order"), // the order service takes orders and starts their sagas
	)
)
