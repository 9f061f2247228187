package embedded_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/embedded"
	"github.com/choreo-go/choreo/internal/testcert"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

type (
	placed   struct{ ID string }
	charged  struct{ ID string }
	reserved struct{ ID string }
)

var (
	charge  = saga.NewStep[placed, charged]("charge", saga.Owner("payment"), saga.Undo("refund"))
	reserve = saga.NewStep[charged, reserved]("reserve", saga.Owner("inventory"), saga.Pivot())
	flow    = saga.MustDefine[placed]("tlsorder", 1, charge, reserve)
)

// A 3-node cluster whose routes are mutual TLS, with certificates made for
// the test: a saga runs across it (its steps on two nodes, started from
// the third, R3 streams), a client that does not trust the CA or has no
// certificate is refused, and a route peer in plain text or with a
// certificate from another authority never joins.
func TestClusterWithTLSRoutesRunsASagaAndRefusesStrangers(t *testing.T) {
	certs := testcert.New(t)
	var routes, clients []string
	for range 3 {
		routes = append(routes, shoptest.FreeAddr(t))
		clients = append(clients, shoptest.FreeAddr(t))
	}
	var nodes []*server.Server
	logs := &shoptest.LogBuffer{}
	for i := range 3 {
		o, err := embedded.NodeOptions(embedded.Node{
			Name: fmt.Sprintf("n%d", i), Cluster: "choreo", Addr: clients[i], RouteAddr: routes[i], Routes: routes,
			DataDir: filepath.Join(t.TempDir(), "js"), TLS: embedded.TLSFiles{Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA},
			VerifyClients: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		var logger server.Logger
		if i == 0 {
			logger = logs
		}
		nodes = append(nodes, shoptest.StartServer(t, o, logger))
	}
	connect := func(i int, opts ...nats.Option) (*nats.Conn, error) {
		return nats.Connect("tls://"+clients[i], append([]nats.Option{nats.Timeout(5 * time.Second)}, opts...)...)
	}
	trusted := []nats.Option{nats.RootCAs(certs.CA), nats.ClientCert(certs.ClientCert, certs.ClientKey)}
	var conns []*nats.Conn
	for i := range 3 {
		nc, err := connect(i, trusted...)
		if err != nil {
			t.Fatalf("connect to n%d: %v", i, err)
		}
		t.Cleanup(nc.Close)
		conns = append(conns, nc)
	}
	// JetStream is up once the meta group has a leader.
	var clientsOf []*saga.Client
	sagatest.Poll(t, time.Minute, func() bool {
		js, _ := jetstream.New(conns[2])
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	}, func() string { return "no JetStream meta leader over TLS routes:\n" + logs.String() })
	for i := range 3 {
		js, _ := jetstream.New(conns[i])
		var c *saga.Client
		sagatest.Poll(t, time.Minute, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var err error
			c, err = saga.New(ctx, js) // R3 on a cluster
			return err == nil
		}, func() string { return fmt.Sprintf("saga.New on n%d", i) })
		clientsOf = append(clientsOf, c)
	}

	// The steps run on n0 and n1; the saga starts on n2.
	for i, bind := range []func(*saga.Runner) error{
		func(r *saga.Runner) error {
			return saga.Handle(r, charge, func(_ context.Context, p placed) (charged, error) { return charged(p), nil },
				func(context.Context, placed, charged) error { return nil })
		},
		func(r *saga.Runner) error {
			return saga.Handle(r, reserve, func(_ context.Context, c charged) (reserved, error) { return reserved(c), nil }, nil)
		},
	} {
		r, err := saga.NewRunner(clientsOf[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := bind(r); err != nil {
			t.Fatal(err)
		}
		sagatest.Run(t, r)
	}
	if err := saga.Start(context.Background(), clientsOf[2], flow, "o1", placed{ID: "o1"}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, clientsOf[2], flow, "o1", time.Minute, saga.StatusCompleted)
	js, _ := jetstream.New(conns[0])
	info, err := js.Stream(context.Background(), access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().Config.Replicas; n != 3 {
		t.Errorf("the saga stream has %d replicas, want 3", n)
	}

	// Clients: without the CA, or without a certificate, refused.
	if nc, err := connect(0); err == nil {
		nc.Close()
		t.Error("a client that does not trust the CA connected")
	}
	if nc, err := connect(0, nats.RootCAs(certs.CA)); err == nil {
		nc.Close()
		t.Error("a client without a certificate connected")
	}
	other := testcert.New(t)
	if nc, err := connect(0, nats.RootCAs(certs.CA), nats.ClientCert(other.ClientCert, other.ClientKey)); err == nil {
		nc.Close()
		t.Error("a client whose certificate another CA signed connected")
	}

	// Route peers: one in plain text, one with another CA's certificate.
	before := nodes[0].NumRoutes()
	for _, tc := range []struct {
		name, why string
		tls       *embedded.TLSFiles
	}{
		{"plain", "first record does not look like a TLS handshake", nil},
		{"other-ca", "certificate signed by unknown authority", &embedded.TLSFiles{Cert: other.ServerCert, Key: other.ServerKey, CA: other.CA}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &server.Options{
				ServerName: "intruder-" + tc.name, Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
				Cluster: server.ClusterOpts{Name: "choreo", Host: "127.0.0.1", Port: -1, ConnectRetries: -1},
				Routes:  server.RoutesFromStr("nats-route://" + routes[0]),
			}
			if tc.tls != nil {
				var err error
				if o.Cluster.TLSConfig, err = tc.tls.ServerConfig(true); err != nil {
					t.Fatal(err)
				}
				o.Cluster.TLSConfig.RootCAs = o.Cluster.TLSConfig.ClientCAs
				o.Cluster.TLSTimeout = 5
			}
			ilogs := &shoptest.LogBuffer{}
			s := shoptest.StartServer(t, o, ilogs)
			// It tried twice and was refused, for the reason wanted, on
			// one side or the other.
			sagatest.Poll(t, 30*time.Second, func() bool {
				return strings.Count(logs.String()+ilogs.String(), tc.why) >= 2
			}, func() string { return "no refusal logged:\n" + ilogs.String() })
			if n := s.NumRoutes(); n != 0 {
				t.Errorf("the intruder has %d routes", n)
			}
			if n := nodes[0].NumRoutes(); n != before {
				t.Errorf("n0 has %d routes, had %d", n, before)
			}
		})
	}
}
