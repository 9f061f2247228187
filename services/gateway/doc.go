// Package gateway is the shop's front door: the HTTP API, the web UI and
// its websocket push. It reads from its own read model, built from events,
// and from the sagas' state; it changes nothing itself but hands
// registrations and orders to the services that own them.
//
// A customer's data is that customer's: registering answers a token that
// reads and acts for that customer only, and everyone's data needs the
// operator's token (WithCustomerTokens, WithOperatorToken; auth.go).
package gateway
