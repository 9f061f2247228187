package shop_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// The failover of issue 24: on a 3-node cluster with the shop's
// identities, the order service receives the gateway's placement on one
// node, the node goes away before it answers, and its connection moves to
// another node; the answer, sent there, must reach the gateway.
// nats-server's allow_responses grants a reply only on the connection the
// request came in on (the new one never saw the request), so without an
// explicit grant to the gateway's inbox the server refuses it with
// "Permissions Violation for Publish to _INBOX_gateway…" and the gateway
// waits in vain.
func TestPlacementReplyCrossesAFailover(t *testing.T) {
	dir := t.TempDir()
	users, _, err := shop.Identities(dir)
	if err != nil {
		t.Fatal(err)
	}
	var routes, clients []string
	for range 3 {
		routes = append(routes, shoptest.FreeAddr(t))
		clients = append(clients, shoptest.FreeAddr(t))
	}
	var nodes []*server.Server
	for i := range 3 {
		host, port := split(t, clients[i])
		rhost, rport := split(t, routes[i])
		var rs []string
		for _, r := range routes {
			rs = append(rs, "nats://"+r)
		}
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: host, Port: port, NoLog: true, NoSigs: true, Nkeys: users,
			Cluster: server.ClusterOpts{Name: "choreo", Host: rhost, Port: rport, ConnectRetries: -1},
			Routes:  server.RoutesFromStr(strings.Join(rs, ",")),
		}
		nodes = append(nodes, shoptest.StartServer(t, o, nil))
	}
	sagatest.Poll(t, time.Minute, func() bool {
		for _, n := range nodes {
			if n.NumRoutes() < 2 {
				return false
			}
		}
		return true
	}, func() string { return "the cluster's routes did not form" })

	// The order service on n1 (n2 next), the gateway on n0.
	violations := make(chan error, 8)
	reconnected := make(chan struct{}, 1)
	ord := shoptest.ConnectAs(t, "nats://"+clients[1]+",nats://"+clients[2], dir, "order", violations,
		nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	gw := shoptest.ConnectAs(t, "nats://"+clients[0], dir, "gateway", nil)

	got := make(chan *nats.Msg, 1)
	if _, err := ord.Subscribe(order.PlaceSubject, func(m *nats.Msg) { got <- m }); err != nil {
		t.Fatal(err)
	}
	if err := ord.Flush(); err != nil {
		t.Fatal(err)
	}
	// The subscription reaches n0 over the routes.
	sagatest.Poll(t, 30*time.Second, func() bool { return interest(nodes[0], order.PlaceSubject) },
		func() string { return "n0 never learned of the order service's subscription" })

	var answer atomic.Value
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		m, err := gw.RequestWithContext(ctx, order.PlaceSubject, []byte(`{}`))
		if err == nil {
			answer.Store(string(m.Data))
		}
		done <- err
	}()
	var req *nats.Msg
	select {
	case req = <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("the order service never received the placement")
	}
	// n1 goes away; the order service's connection moves to n2.
	nodes[1].Shutdown()
	select {
	case <-reconnected:
	case <-time.After(30 * time.Second):
		t.Fatal("the order service never reconnected to n2")
	}
	if url := ord.ConnectedUrl(); !strings.Contains(url, clients[2]) {
		t.Fatalf("the order service is on %s, want n2 (%s)", url, clients[2])
	}
	if err := req.Respond([]byte(`{"result":{"id":"ord-1"}}`)); err != nil {
		t.Fatal(err)
	}
	if err := ord.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		var v error
		select {
		case v = <-violations:
		default:
		}
		t.Fatalf("the gateway got no answer after the failover: %v (the order service was told: %v)", err, v)
	}
	if a, _ := answer.Load().(string); !strings.Contains(a, "ord-1") {
		t.Fatalf("the gateway got %q", a)
	}
	select {
	case v := <-violations:
		t.Fatalf("the order service was told: %v", v)
	default:
	}
}

// interest reports whether the server routes messages on subject to a
// subscriber.
func interest(s *server.Server, subject string) bool {
	acc, err := s.LookupAccount(server.DEFAULT_GLOBAL_ACCOUNT)
	if err != nil {
		return false
	}
	return acc.Interest(subject) > 0
}

func split(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, p, ok := strings.Cut(addr, ":")
	var port int
	if _, err := fmt.Sscan(p, &port); !ok || err != nil {
		t.Fatalf("address %q", addr)
	}
	return host, port
}
