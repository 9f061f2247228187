package schemas

import (
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
)

// The order saga, version 1: the card is charged; then stock is reserved,
// the invoice issued and the delivery scheduled, in parallel; then the
// order is confirmed (the pivot). A refusal anywhere undoes what was done.
//
// Version 2 invoices only confirmed orders: the invoice leaves the
// parallel group for a retriable bill step after the pivot, so a refused
// order no longer leaves a voided invoice behind. Both versions run side
// by side: an order ends on the version it started with (see
// saga.ServeVersions and services/kit's CHOREO_ORDER_VERSIONS for a
// rolling upgrade).
//
// Version 3 keeps personal data out of the saga: its delivery step, book,
// answers DeliveryBooked (ids and a date) where the schedule step of
// versions 1 and 2 answers DeliveryScheduled, with the delivery address,
// which every participant of a saga can read. The shipping service keeps the address, from its
// copy of the customer's, looked up by the customer's id. A result type is
// part of a version's contract, so the change is a new version, not an
// edit of DeliveryScheduled: sagas of versions 1 and 2 still run to their
// end on the types they started with.
//
// Version 4 waits on the outside world. Its charge waits for the
// customer's confirmation when the payment service asks for one (orders
// above a threshold: the customer clicks "confirm payment" on the page),
// and is compensated when none comes within ConfirmTimeout; a small order
// is charged at once. After the pivot, deliver asks the carrier for a
// pickup and completes on its ParcelDelivered event, asking again each
// DeliveryTimeout the answer is overdue (doctor reports it past its
// retries), alongside bill. Its sagas are found by three search
// attributes: the customer and the total (in the currency's units) of
// the order, and the country its delivery goes to (from the book step's
// result, computed by the shipping service, which keeps the address).
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
	// ScheduleDelivery (version 3), the step "book", is Schedule without
	// the address in its result (a step of a new type needs a new name):
	// owned by the shipping service; compensated by a cancel.
	ScheduleDelivery = saga.NewStep[PaymentSucceeded, DeliveryBooked]("book", saga.WithTimeout(30*time.Second),
		saga.Owner("shipping"), saga.Undo("cancel"))
	// Confirm is owned by the order service: the point of no return.
	Confirm = saga.NewStep[OrderPlaced, OrderConfirmed]("confirm", saga.Pivot(), saga.Owner("order"))
	// Bill (version 2) is owned by the billing service: it invoices a
	// confirmed order, retried until it succeeds.
	Bill = saga.NewStep[OrderConfirmed, InvoiceIssued]("bill", saga.Retriable(), saga.Owner("billing"),
		saga.WithRetry(saga.RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}))

	// ConfirmedCharge (version 4) is Charge that may wait for the
	// customer's confirmation (WaitsFor "customer"): owned by the payment
	// service; compensated by a refund. It is tried once: a wait that
	// times out compensates (the action retries a passing failure
	// itself).
	ConfirmedCharge = saga.NewStep[OrderPlaced, PaymentSucceeded]("charge",
		saga.WithRetry(saga.RetryPolicy{MaxAttempts: 1}), saga.WithTimeout(30*time.Second), saga.WithCompensationRetry(refundRetry),
		saga.WaitsFor("customer", ConfirmTimeout),
		saga.Owner("payment"), saga.Undo("refund"))
	// Deliver (version 4) is owned by the shipping service: it asks the
	// carrier for a pickup (PickupRequested) and completes on the
	// carrier's ParcelDelivered for the order. Retried (asked again) each
	// time the carrier's answer is DeliveryTimeout late.
	Deliver = saga.NewStep[OrderConfirmed, ParcelDelivered]("deliver", saga.Retriable(), saga.Owner("shipping"),
		saga.WaitsFor("carrier", DeliveryTimeout), saga.CompletesOn(TopicParcelDelivered, "order_id"),
		saga.WithRetry(saga.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Second, MaxBackoff: 10 * time.Second}))

	// OrderFlow is the flow every participant compiles in.
	OrderFlow = saga.MustDefine[OrderPlaced]("order", 1,
		Charge,
		saga.Parallel(Reserve, Invoice, Schedule),
		Confirm,
		saga.Deadline(orderDeadline),
		saga.StartedBy("order"), // the order service takes orders and starts their sagas
	)

	// OrderFlowV2 is version 2 of the order flow: invoices after the pivot.
	OrderFlowV2 = saga.MustDefine[OrderPlaced]("order", 2,
		Charge,
		saga.Parallel(Reserve, Schedule),
		Confirm,
		Bill,
		saga.Deadline(orderDeadline),
		saga.StartedBy("order"),
	)

	// OrderFlowV3 is version 3 of the order flow: version 2 with ids only
	// in the result of its delivery step (book, not schedule).
	OrderFlowV3 = saga.MustDefine[OrderPlaced]("order", 3,
		Charge,
		saga.Parallel(Reserve, ScheduleDelivery),
		Confirm,
		Bill,
		saga.Deadline(orderDeadline),
		saga.StartedBy("order"),
	)

	// OrderFlowV4 is version 4 of the order flow: version 3 whose charge
	// may wait for the customer, and whose parcel is delivered by the
	// carrier after the pivot, alongside the bill. Its deadline leaves
	// room for the customer's confirmation.
	OrderFlowV4 = saga.MustDefine[OrderPlaced]("order", 4,
		ConfirmedCharge,
		saga.Parallel(Reserve, ScheduleDelivery),
		Confirm,
		saga.Parallel(Bill, Deliver),
		saga.Deadline(orderDeadline+ConfirmTimeout),
		saga.StartedBy("order"),
		// What an operator finds its orders by (choreo sagas ls --where
		// customer=c-123 --where total>100, the console's search): stored
		// in the clear in the search index, so nothing secret.
		saga.Attr("customer", func(o OrderPlaced) string { return o.CustomerID }),
		saga.NumberAttr("total", func(o OrderPlaced) float64 { return float64(o.Total) / 100 }),
		saga.ResultAttr(ScheduleDelivery, "country", func(d DeliveryBooked) string { return d.Country }),
	)

	// OrderFlows are the versions of the order flow the shop runs; new
	// orders start on the last.
	OrderFlows = []access.Definition{OrderFlow, OrderFlowV2, OrderFlowV3, OrderFlowV4}
)
