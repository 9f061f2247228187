package shop

import (
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/customer"
	"github.com/choreo-go/choreo/services/gateway"
	"github.com/choreo-go/choreo/services/inventory"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
)

// Admin is the identity that provisions the streams and buckets, and that
// operators use (the nats CLI, the checkers): it may do everything.
const Admin = "admin"

// Buckets names each service's key-value buckets.
var Buckets = map[string][]string{
	"customer": {"customer"}, "order": {"orders"}, "payment": {"payment", payment.TokenBucket},
	"inventory": {"inventory", inventory.ArchiveBucket}, "billing": {"billing"},
	"shipping": {"shipping"}, "notification": {"notification"},
}

// published and subscribed are each service's domain event topics.
var (
	published = map[string][]string{
		"customer":  {schemas.TopicCustomerRegistered},
		"order":     {schemas.TopicOrderPlaced, schemas.TopicOrderConfirmed, schemas.TopicOrderRejected},
		"payment":   {schemas.TopicPaymentSucceeded, schemas.TopicPaymentDeclined, schemas.TopicPaymentRefunded},
		"inventory": {schemas.TopicStockChanged},
		"shipping":  {schemas.TopicPickupRequested},
		"carrier":   {schemas.TopicParcelDelivered},
	}
	subscribed = map[string][]string{
		"notification": {schemas.TopicCustomerRegistered, schemas.TopicOrderPlaced, schemas.TopicPaymentSucceeded, schemas.TopicOrderConfirmed, schemas.TopicOrderRejected},
		"shipping":     {schemas.TopicCustomerRegistered},
		"carrier":      {schemas.TopicPickupRequested},
	}
	// served are the request/reply endpoints each service answers.
	served = map[string][]string{
		"customer": {customer.RegisterSubject}, "order": {order.PlaceSubject}, "payment": {payment.TokenizeSubject, payment.ConfirmSubject},
	}
)

// Permissions is what each of the shop's services may do on the broker:
// the saga permissions of the order flow (access.Permissions: its own steps,
// its own consumers), its own buckets, the domain events it publishes and
// consumes, the endpoints it serves; the gateway reads the sagas and the
// events (saga.Reader) and calls the endpoints. The admin is not in it.
func Permissions() (map[string]access.Access, error) {
	perms, err := access.Permissions(schemas.OrderFlows...)
	if err != nil {
		return nil, err
	}
	for _, name := range Services {
		a := perms[name]
		a.Add(access.Base(name))
		a.Add(events.Access(name, published[name], subscribed[name]))
		a.Add(kit.BucketAccess(Buckets[name]...))
		for _, subj := range served[name] {
			a.Add(access.Access{Subscribe: access.Rules{Allow: []string{subj}}, Responses: true})
			// The gateway calls every endpoint: its answers must get
			// through a failover too (access.Answers).
			a.Add(access.Answers("gateway"))
		}
		if name == "gateway" {
			r, err := access.Reader(name, schemas.OrderFlows...)
			if err != nil {
				return nil, err
			}
			a.Add(r)
			a.Add(events.ReadAccess(gateway.ViewReader)) // its read model's own consumers, by name
			a.Add(access.Access{Publish: access.Rules{Allow: []string{customer.RegisterSubject, order.PlaceSubject, payment.TokenizeSubject, payment.ConfirmSubject}}})
			// /healthz looks up every stream and bucket the shop needs.
			for _, st := range kit.Streams {
				a.Add(access.Access{Publish: access.Rules{Allow: []string{"$JS.API.STREAM.INFO." + st}}})
			}
			for _, b := range kit.Buckets {
				a.Add(access.Access{Publish: access.Rules{Allow: []string{"$JS.API.STREAM.INFO.KV_" + b}}})
			}
		}
		perms[name] = a
	}
	return perms, nil
}
