// Package shoptest is the shop's test kit: what the shop's tests in every
// package (services/shop, test/e2e, test/faults, test/security,
// test/compose, test/browser, the commands) need once, with t.Helper and
// t.Cleanup, and polling with deadlines.
//
// # The shop over HTTP
//
// [Do] and [Call] send a JSON request and decode the JSON answer;
// [Register], [PlaceOrder] and [AwaitStatus] register a customer, place an
// order and wait for its status at the gateway. Register answers a
// [Customer], its id and the token the gateway gave it: the other two,
// and any request for that customer's data ([Customer.Auth]), bring it.
//
// # Running the shop
//
// [RunShop] runs [shop.Run] in the test's process until the test ends;
// [StartShop] does so outside a test (a shop shared by several tests).
// [Go] runs one service (any Run function) until the test ends or Stop.
//
// # Load and settling
//
// [Mix] draws the kinds of a load's orders (confirmed, declined, sold out,
// not delivered to); [AwaitEnded] waits for their sagas to end; [Check]
// runs test/checker, retried while the broker recovers.
//
// # Servers, connections and logs
//
// [StartServer] starts a nats-server from options (a node of a cluster, a
// server from a configuration file) and [AwaitJetStream] waits for its
// JetStream; [Seed], [Connect] and [ConnectAs] connect, as an identity of
// the shop's credentials or not; [FreePort] and [FreeAddr] find free
// ports; [LogBuffer] is a concurrency-safe sink for slog and the server's
// logger.
package shoptest
