// Package gateway is the shop's front door: the HTTP API, the web UI and
// its websocket push. It reads from its own read model, built from events,
// and from the sagas' state; it changes nothing itself but hands
// registrations and orders to the services that own them.
package gateway
