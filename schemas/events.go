// Package schemas holds the contracts of the example shop: the Go type of
// every event, its JSON Schema (2020-12) under json/, a golden example
// under testdata/, and the order saga's flow definition, which every
// participant compiles in. Validate checks an event against its schema;
// the services check every event they take.
package schemas

import "time"

// Money is an amount in minor units (cents) of a currency.
type Money = int64

// Address is where an order is delivered.
type Address struct {
	Line1    string `json:"line1"`
	City     string `json:"city"`
	Postcode string `json:"postcode"`
	Country  string `json:"country"` // ISO 3166-1 alpha-2
}

// Item is a line of an order.
type Item struct {
	SKU       string `json:"sku"`
	Qty       int    `json:"qty"`
	UnitPrice Money  `json:"unit_price"`
}

// CustomerRegistered: a customer signed up. Topic customer.registered.
type CustomerRegistered struct {
	CustomerID   string    `json:"customer_id"`
	Name         string    `json:"name"`
	Email        string    `json:"email"`
	Address      Address   `json:"address"`
	RegisteredAt time.Time `json:"registered_at"`
}

// Card is the card an order is paid with, as the payment service's token:
// the number itself never travels in an event nor rests in a stream. The
// brand and the last four digits are there for display ("visa •••• 4242").
type Card struct {
	Token string `json:"token"` // tok_…, from the payment service's tokenize endpoint
	Brand string `json:"brand"`
	Last4 string `json:"last4"`
}

// OrderPlaced: an order was accepted; it starts the order saga and is
// published on topic order.placed.
type OrderPlaced struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Items      []Item    `json:"items"`
	Total      Money     `json:"total"`
	Currency   string    `json:"currency"`
	Card       Card      `json:"card"`
	PlacedAt   time.Time `json:"placed_at"`
}

// PaymentSucceeded: the order's card was charged. The result of the
// charge step, and published on topic payment.succeeded.
type PaymentSucceeded struct {
	PaymentID string `json:"payment_id"`
	OrderID   string `json:"order_id"`
	// CustomerID is whose order it is, so that a consumer (the receipt)
	// needs no other event first. Events of earlier versions lack it.
	CustomerID string    `json:"customer_id,omitempty"`
	Time       time.Time `json:"time"`
	Amount     Money     `json:"amount"`
	Currency   string    `json:"currency"`
}

// PaymentDeclined: the card was refused. Topic payment.declined.
type PaymentDeclined struct {
	OrderID string    `json:"order_id"`
	Reason  string    `json:"reason"`
	Amount  Money     `json:"amount"`
	Time    time.Time `json:"time"`
}

// PaymentRefunded: a charge was given back. Topic payment.refunded.
type PaymentRefunded struct {
	PaymentID string    `json:"payment_id"`
	OrderID   string    `json:"order_id"`
	Amount    Money     `json:"amount"`
	Currency  string    `json:"currency"`
	Time      time.Time `json:"time"`
}

// StockReserved: the items are put aside. The result of the reserve step.
type StockReserved struct {
	ReservationID string    `json:"reservation_id"`
	OrderID       string    `json:"order_id"`
	Items         []Item    `json:"items"`
	Time          time.Time `json:"time"`
}

// InvoiceIssued: the order is invoiced. The result of the invoice step.
type InvoiceIssued struct {
	InvoiceID string    `json:"invoice_id"`
	OrderID   string    `json:"order_id"`
	Amount    Money     `json:"amount"`
	Currency  string    `json:"currency"`
	IssuedAt  time.Time `json:"issued_at"`
}

// DeliveryScheduled: a delivery is booked. The result of the schedule step
// of versions 1 and 2 of the order flow, which carries the address: every
// participant of the flow can read it. Version 3's schedule answers
// DeliveryBooked instead, which names the delivery and nothing else. The
// type stays as it is while sagas of versions 1 and 2 may run: it is
// their contract.
type DeliveryScheduled struct {
	DeliveryID   string    `json:"delivery_id"`
	OrderID      string    `json:"order_id"`
	Address      Address   `json:"address"`
	ScheduledFor time.Time `json:"scheduled_for"`
}

// DeliveryBooked: a delivery is booked. The result of the schedule step of
// version 3 of the order flow: ids and a date, no personal data. Where the
// delivery goes stays in the shipping service (its copy of the customer's
// address, from CustomerRegistered), which looks it up by the customer's
// id; no other participant of the saga needs it.
type DeliveryBooked struct {
	DeliveryID   string    `json:"delivery_id"`
	OrderID      string    `json:"order_id"`
	ScheduledFor time.Time `json:"scheduled_for"`
	// Country is where it goes (ISO 3166-1 alpha-2), no finer: the order
	// flow's search attribute country. Bookings of earlier builds lack it.
	Country string `json:"country,omitempty"`
}

// OrderConfirmed: the order went through. The result of the confirm step,
// and published on topic order.confirmed.
type OrderConfirmed struct {
	OrderID     string    `json:"order_id"`
	CustomerID  string    `json:"customer_id"`
	Total       Money     `json:"total"`
	Currency    string    `json:"currency"`
	ConfirmedAt time.Time `json:"confirmed_at"`
}

// OrderRejected: the order did not go through; everything done for it was
// undone. Topic order.rejected.
type OrderRejected struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Reason     string    `json:"reason"`
	RejectedAt time.Time `json:"rejected_at"`
}

// StockLevel is one product's stock.
type StockLevel struct {
	SKU   string `json:"sku"`
	Stock int    `json:"stock"`
}

// StockChanged: the inventory's stock after a change, every product's
// level. Version grows with every change of the stock, so a reader keeps
// the highest it has seen and a late or repeated event changes nothing.
// Topic inventory.stock.
type StockChanged struct {
	Version int64        `json:"version"`
	Levels  []StockLevel `json:"levels"`
	Time    time.Time    `json:"time"`
}

// PickupRequested: shipping asks the carrier to pick up and deliver an
// order's parcel (the deliver step of version 4 of the order flow, and
// again each time the carrier's answer is overdue). Topic
// shipping.pickup. The address stays in the shipping service: a real
// carrier would get it from shipping's own API; the simulated one needs
// none.
type PickupRequested struct {
	DeliveryID  string    `json:"delivery_id"`
	OrderID     string    `json:"order_id"`
	Attempt     int       `json:"attempt"`
	RequestedAt time.Time `json:"requested_at"`
}

// ParcelDelivered: the carrier delivered an order's parcel. Topic
// carrier.delivered; the deliver step of version 4 completes on it (its
// order_id is the saga's id), and it is the step's result.
type ParcelDelivered struct {
	DeliveryID  string    `json:"delivery_id"`
	OrderID     string    `json:"order_id"`
	Carrier     string    `json:"carrier"`
	DeliveredAt time.Time `json:"delivered_at"`
}

// Topics of the domain events.
const (
	TopicCustomerRegistered = "customer.registered"
	TopicOrderPlaced        = "order.placed"
	TopicOrderConfirmed     = "order.confirmed"
	TopicOrderRejected      = "order.rejected"
	TopicPaymentSucceeded   = "payment.succeeded"
	TopicPaymentDeclined    = "payment.declined"
	TopicPaymentRefunded    = "payment.refunded"
	TopicStockChanged       = "inventory.stock"
	TopicPickupRequested    = "shipping.pickup"
	TopicParcelDelivered    = "carrier.delivered"
)

// TypeOfTopic names the event type each topic carries.
var TypeOfTopic = map[string]string{
	TopicCustomerRegistered: "CustomerRegistered",
	TopicOrderPlaced:        "OrderPlaced",
	TopicOrderConfirmed:     "OrderConfirmed",
	TopicOrderRejected:      "OrderRejected",
	TopicPaymentSucceeded:   "PaymentSucceeded",
	TopicPaymentDeclined:    "PaymentDeclined",
	TopicPaymentRefunded:    "PaymentRefunded",
	TopicStockChanged:       "StockChanged",
	TopicPickupRequested:    "PickupRequested",
	TopicParcelDelivered:    "ParcelDelivered",
}

// Types maps every event type name to a zero value of its Go type.
var Types = map[string]any{
	"CustomerRegistered": CustomerRegistered{},
	"OrderPlaced":        OrderPlaced{},
	"PaymentSucceeded":   PaymentSucceeded{},
	"PaymentDeclined":    PaymentDeclined{},
	"PaymentRefunded":    PaymentRefunded{},
	"StockReserved":      StockReserved{},
	"InvoiceIssued":      InvoiceIssued{},
	"DeliveryScheduled":  DeliveryScheduled{},
	"DeliveryBooked":     DeliveryBooked{},
	"OrderConfirmed":     OrderConfirmed{},
	"OrderRejected":      OrderRejected{},
	"StockChanged":       StockChanged{},
	"PickupRequested":    PickupRequested{},
	"ParcelDelivered":    ParcelDelivered{},
}
