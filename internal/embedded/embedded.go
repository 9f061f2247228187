// Package embedded runs a nats-server with JetStream inside a binary, for
// the one-command runs, and builds the options of a TLS-secured cluster
// node. Tests use saga/sagatest instead.
package embedded

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config says where the server listens and stores.
type Config struct {
	Addr    string // host:port; port 0 picks a free one
	DataDir string // JetStream store; created if missing
	// SyncAlways fsyncs every write, so a machine crash loses nothing that
	// was acknowledged; it costs throughput.
	SyncAlways bool
	// Users, when set, are the only clients the server accepts, each with
	// its permissions (see access.Permissions); no anonymous access.
	Users []*server.NkeyUser
	// TLS for clients: with TLSCert and TLSKey the server requires TLS;
	// with TLSCA too, clients must present a certificate that CA signed.
	TLS TLSFiles
}

// TLSFiles are PEM files: a certificate, its key and an authority.
type TLSFiles struct {
	Cert, Key, CA string
}

// On says whether any file is given.
func (f TLSFiles) On() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// ServerConfig loads the files into a server's TLS configuration. verify
// asks for clients' certificates, signed by the CA (which it requires).
// Unreadable or mismatched files are a one-line error.
func (f TLSFiles) ServerConfig(verify bool) (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("tls: a certificate and its key are both required")
	}
	if verify && f.CA == "" {
		return nil, errors.New("tls: verifying peers' certificates needs the CA")
	}
	c, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: f.Cert, KeyFile: f.Key, CaFile: f.CA, Verify: verify})
	if err != nil {
		return nil, fmt.Errorf("tls: %v", err)
	}
	if c == nil || (f.CA != "" && c.ClientCAs == nil) {
		return nil, fmt.Errorf("tls: cannot read the CA %s", f.CA)
	}
	return c, nil
}

// Start starts the server and waits until it accepts connections. Stop it
// with Shutdown.
func Start(c Config) (*server.Server, error) {
	host, p, err := splitAddr("nats address", c.Addr)
	if err != nil {
		return nil, err
	}
	if c.DataDir == "" {
		return nil, fmt.Errorf("empty data directory")
	}
	o := &server.Options{
		ServerName: "choreo", Host: host, Port: p,
		JetStream: true, StoreDir: c.DataDir, SyncAlways: c.SyncAlways,
		NoLog: true, NoSigs: true, MaxPayload: 8 << 20,
		Nkeys: c.Users,
	}
	if c.TLS.On() {
		if o.TLSConfig, err = c.TLS.ServerConfig(c.TLS.CA != ""); err != nil {
			return nil, err
		}
		o.TLS, o.TLSVerify, o.TLSTimeout = true, c.TLS.CA != "", 5
	}
	return Run(o)
}

// Run starts a server with the options and waits until it accepts
// connections.
func Run(o *server.Options) (*server.Server, error) {
	s, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server did not start on %s:%d (is the port taken?)", o.Host, o.Port)
	}
	return s, nil
}

// Node is one server of a JetStream cluster whose routes are mutual TLS:
// each node presents TLS.Cert and accepts only peers whose certificate
// TLS.CA signed, so neither a plain-text peer nor one with a certificate
// from another authority can join. Clients get TLS with the same
// certificate; with VerifyClients they must present one the CA signed.
type Node struct {
	Name          string   // unique in the cluster
	Cluster       string   // the cluster's name
	Addr          string   // clients' host:port (port 0: any free one)
	RouteAddr     string   // routes' host:port
	Routes        []string // every node's route host:port (its own is ignored)
	DataDir       string
	TLS           TLSFiles // all three required
	VerifyClients bool
}

// NodeOptions returns the server options of a cluster node, or a
// one-line error for a missing or unreadable file or a bad address.
func NodeOptions(n Node) (*server.Options, error) {
	if n.TLS.CA == "" {
		return nil, errors.New("tls: a cluster node needs the CA that signed its peers' certificates")
	}
	routeTLS, err := n.TLS.ServerConfig(true)
	if err != nil {
		return nil, err
	}
	routeTLS.RootCAs = routeTLS.ClientCAs // a route is a client of its peer too
	clientTLS, err := n.TLS.ServerConfig(n.VerifyClients)
	if err != nil {
		return nil, err
	}
	host, port, err := splitAddr("client address", n.Addr)
	if err != nil {
		return nil, err
	}
	rhost, rport, err := splitAddr("route address", n.RouteAddr)
	if err != nil {
		return nil, err
	}
	var routes []string
	for _, r := range n.Routes {
		if _, _, err := splitAddr("route", r); err != nil {
			return nil, err
		}
		routes = append(routes, "tls://"+r)
	}
	if n.DataDir == "" {
		return nil, errors.New("empty data directory")
	}
	return &server.Options{
		ServerName: n.Name, Host: host, Port: port,
		JetStream: true, StoreDir: n.DataDir, SyncAlways: true,
		NoLog: true, NoSigs: true, MaxPayload: 8 << 20,
		TLS: true, TLSVerify: n.VerifyClients, TLSConfig: clientTLS, TLSTimeout: 5,
		Cluster: server.ClusterOpts{
			Name: n.Cluster, Host: rhost, Port: rport,
			TLSConfig: routeTLS, TLSTimeout: 5, ConnectRetries: -1,
		},
		Routes: server.RoutesFromStr(strings.Join(routes, ",")),
	}, nil
}

// splitAddr checks a host:port; port 0 becomes -1, nats-server's "any".
func splitAddr(what, addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %v", what, addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("%s %q: bad port", what, addr)
	}
	if p == 0 {
		p = -1
	}
	return host, p, nil
}
