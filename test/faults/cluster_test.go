package faults_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// cluster is a JetStream cluster of in-process nats-servers. Every route
// between two nodes passes through a proxy in front of the node it goes
// to (each node advertises its proxy, so routes found by gossip do too),
// and the proxy knows which node opened each route from the route's
// CONNECT: a partition closes the routes of the nodes cut off and refuses
// new ones until it heals.
type cluster struct {
	t     testing.TB
	nodes []*node
	mu    sync.Mutex
	cut   map[string]bool // node names cut off from the others
}

type node struct {
	c     *cluster
	name  string
	opts  server.Options
	srv   *server.Server
	proxy net.Listener // in front of the route port
	mu    sync.Mutex
	conns []*routeConn
}

type routeConn struct {
	from, to string // node names
	a, b     net.Conn
}

func newCluster(t testing.TB, n int) *cluster {
	t.Helper()
	c := &cluster{t: t, cut: map[string]bool{}}
	var routes []string
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nd := &node{c: c, name: fmt.Sprintf("n%d", i), proxy: ln}
		routes = append(routes, "nats-route://"+ln.Addr().String())
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		nd.opts = server.Options{
			ServerName: nd.name, Host: "127.0.0.1", Port: shoptest.FreePort(t),
			JetStream: true, StoreDir: filepath.Join(t.TempDir(), nd.name), SyncAlways: true,
			NoLog: true, NoSigs: true, MaxPayload: 2 << 20,
			Cluster: server.ClusterOpts{Name: "choreo", Host: "127.0.0.1", Port: shoptest.FreePort(t),
				Advertise: nd.proxy.Addr().String(), ConnectRetries: -1},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		go nd.accept()
	}
	for _, nd := range c.nodes {
		nd.start()
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.proxy.Close()
			nd.stop()
		}
	})
	c.awaitJetStream()
	return c
}

// urls is what a client gives to connect to any node.
func (c *cluster) urls() string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", nd.opts.Port))
	}
	return strings.Join(out, ",")
}

func (nd *node) start() {
	t := nd.c.t
	t.Helper()
	o := nd.opts
	srv := shoptest.StartServer(t, &o, nil)
	nd.mu.Lock()
	nd.srv = srv
	nd.mu.Unlock()
}

// stop shuts the node down, as a crash of its machine would for its
// peers: its routes and clients drop at once.
func (nd *node) stop() {
	nd.mu.Lock()
	srv := nd.srv
	nd.srv = nil
	nd.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

func (nd *node) accept() {
	for {
		conn, err := nd.proxy.Accept()
		if err != nil {
			return
		}
		go nd.relay(conn)
	}
}

// relay forwards one route connection to the node, learning which node
// opened it from its first line (CONNECT {"name": <server id>, ...}).
func (nd *node) relay(a net.Conn) {
	b, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", nd.opts.Cluster.Port))
	if err != nil {
		a.Close()
		return
	}
	go func() { _, _ = io.Copy(a, b); a.Close() }() // INFO and the rest, to the opener
	r := bufio.NewReader(a)
	line, err := r.ReadString('\n')
	if err != nil {
		a.Close()
		b.Close()
		return
	}
	from := nd.c.nameOf(line)
	rc := &routeConn{from: from, to: nd.name, a: a, b: b}
	nd.c.mu.Lock()
	blocked := nd.c.cut[from] != nd.c.cut[nd.name]
	nd.c.mu.Unlock()
	if blocked {
		a.Close()
		b.Close()
		return
	}
	nd.mu.Lock()
	nd.conns = append(nd.conns, rc)
	nd.mu.Unlock()
	if _, err := io.WriteString(b, line); err != nil {
		a.Close()
		b.Close()
		return
	}
	_, _ = io.Copy(b, r)
	b.Close()
}

// nameOf returns the node name of the server whose id a route's CONNECT
// carries ("" when unknown).
func (c *cluster) nameOf(connect string) string {
	var ci struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(connect, "CONNECT "))), &ci)
	for _, nd := range c.nodes {
		nd.mu.Lock()
		srv := nd.srv
		nd.mu.Unlock()
		if srv != nil && srv.ID() == ci.Name {
			return nd.name
		}
	}
	return ""
}

// partition cuts the named nodes off from the others: their routes close
// and new ones are refused until heal.
func (c *cluster) partition(names ...string) {
	c.mu.Lock()
	for _, n := range names {
		c.cut[n] = true
	}
	c.mu.Unlock()
	for _, nd := range c.nodes {
		nd.mu.Lock()
		kept := nd.conns[:0]
		for _, rc := range nd.conns {
			if c.cut[rc.from] != c.cut[rc.to] || rc.from == "" {
				rc.a.Close()
				rc.b.Close()
				continue
			}
			kept = append(kept, rc)
		}
		nd.conns = kept
		nd.mu.Unlock()
	}
}

func (c *cluster) heal() {
	c.mu.Lock()
	c.cut = map[string]bool{}
	c.mu.Unlock()
}

// awaitJetStream waits until the cluster has a meta leader and answers
// JetStream requests.
func (c *cluster) awaitJetStream() {
	c.t.Helper()
	shoptest.AwaitJetStream(c.t, c.urls(), time.Minute)
}

// awaitEveryNode waits until every node answers JetStream requests from
// its own clients again.
func (c *cluster) awaitEveryNode() {
	c.t.Helper()
	for _, nd := range c.nodes {
		var last error
		sagatest.Poll(c.t, time.Minute, func() bool {
			nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", nd.opts.Port))
			if err != nil {
				last = err
				return false
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, last = js.AccountInfo(ctx)
			return last == nil
		}, func() string {
			nd.mu.Lock()
			defer nd.mu.Unlock()
			routes := 0
			if nd.srv != nil {
				routes = nd.srv.NumRoutes()
			}
			return fmt.Sprintf("%s does not answer JetStream requests: %v (%d routes)", nd.name, last, routes)
		})
	}
}

// awaitReplicasCurrent waits until every replica of every stream has the
// leader's log. The checker reads the services' ledgers with direct gets,
// which any replica answers: a node that was cut off serves its old copy
// for a while after the heal (a CI run read 22 live effects of
// compensated orders that way).
func (c *cluster) awaitReplicasCurrent(ctx context.Context, js jetstream.JetStream) {
	c.t.Helper()
	var behind string
	sagatest.Poll(c.t, 2*time.Minute, func() bool {
		behind = ""
		streams := js.ListStreams(ctx)
		for info := range streams.Info() {
			if info.Cluster == nil {
				continue
			}
			if info.Cluster.Leader == "" {
				behind = info.Config.Name + ": no leader"
				return false
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current || r.Lag > 0 || r.Offline {
					behind = fmt.Sprintf("%s: replica %s current=%v lag=%d offline=%v", info.Config.Name, r.Name, r.Current, r.Lag, r.Offline)
					return false
				}
			}
		}
		if err := streams.Err(); err != nil {
			behind = err.Error()
			return false
		}
		return true
	}, func() string { return "replicas behind: " + behind })
}

// streamLeader returns the node leading a stream.
func (c *cluster) streamLeader(ctx context.Context, js jetstream.JetStream, stream string) *node {
	c.t.Helper()
	var leader *node
	sagatest.Poll(c.t, 30*time.Second, func() bool {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil {
			return false
		}
		for _, nd := range c.nodes {
			if nd.name == info.Cluster.Leader {
				leader = nd
				return true
			}
		}
		return false
	}, func() string { return "no leader for " + stream })
	return leader
}

// Scenario 10: the shop on a 3-node cluster (streams and buckets R3,
// choreo's default on a cluster). Under load, the CHOREO stream's leader
// is shut down and started again; then one node is cut off from the other
// two and healed. Nothing acknowledged is lost and the invariants hold.
//
// It found that a follower's reads can lag the leader's log even with no
// fault at all: a compensation judged "not due" by a stale state was
// acknowledged and lost, and sagas stayed compensating. choreo now reads
// from the leader whenever a follower's answer is older than what the
// reader knows is in the log.
func TestClusterLeaderLossAndPartition(t *testing.T) {
	var c *cluster
	h := newHarness(t, setup{supervise: true, cluster: func(h *harness) string {
		c = newCluster(t, 3)
		return c.urls()
	}})
	ctx := context.Background()
	info, err := h.d.JS.Stream(ctx, access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if r := info.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("the saga stream has %d replicas on a cluster, want 3", r)
	}
	l := h.startLoad(scale(200), 20)

	time.Sleep(3 * time.Second) // the load runs before the first fault
	leader := c.streamLeader(ctx, h.d.JS, access.StreamName)
	t.Logf("shutting down %s, the leader of %s", leader.name, access.StreamName)
	leader.stop()
	h.faults.Add(1)
	time.Sleep(3 * time.Second) // the outage
	leader.start()
	c.awaitEveryNode()

	time.Sleep(3 * time.Second) // back to normal before the partition
	minority := c.nodes[h.intn(len(c.nodes))]
	t.Logf("cutting %s off from the other two", minority.name)
	c.partition(minority.name)
	h.faults.Add(1)
	time.Sleep(5 * time.Second) // the partition
	c.heal()
	c.awaitEveryNode()

	h.settleWith(l, 3*time.Minute, func() { c.awaitReplicasCurrent(ctx, h.d.JS) })
}

// Scenario 13, the rest: a replica count below what a cluster gives is
// refused unless the caller says it is unsafe on purpose.
func TestR1OnAClusterRefused(t *testing.T) {
	c := newCluster(t, 3)
	_, js := shoptest.Connect(t, c.urls())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := saga.New(ctx, js, access.WithReplicas(1))
	if !errors.Is(err, saga.ErrUnsafeConfig) || !strings.Contains(err.Error(), "1 replica") {
		t.Fatalf("R1 on a cluster: %v, want a refusal that names the replicas", err)
	}
	t.Logf("refused: %v", err)
	if _, err := saga.New(ctx, js, access.WithReplicas(1), access.WithUnsafe()); err != nil {
		t.Errorf("R1 on a cluster with WithUnsafe: %v", err)
	}
}
