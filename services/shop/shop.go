// Package shop runs the whole example shop in one process: an embedded
// nats-server (or an external one), every service and the gateway.
package shop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/sync/errgroup"

	"github.com/choreo-go/choreo/internal/embedded"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/console"
	"github.com/choreo-go/choreo/services/billing"
	"github.com/choreo-go/choreo/services/carrier"
	"github.com/choreo-go/choreo/services/customer"
	"github.com/choreo-go/choreo/services/gateway"
	"github.com/choreo-go/choreo/services/inventory"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/notification"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shipping"
)

// Config says where the shop listens and keeps its data.
type Config struct {
	HTTPAddr string // gateway, host:port
	NATSAddr string // embedded server, host:port (ignored with NATSURL)
	NATSURL  string // an external server instead of the embedded one
	DataDir  string // the embedded server's store and the mail directory
	// TLS has the embedded server require TLS of its clients (Cert, Key),
	// and verify their certificates against CA when given. The services
	// in this process use an in-process connection, which needs neither.
	TLS     embedded.TLSFiles
	MailDir string // default DataDir/mail
	Logger  *slog.Logger
	// Only lists the services to start (all when empty); Without lists
	// services not to start. One shop may run a part of the services and
	// another, joining its server with NATSURL, the rest.
	Only, Without []string
	// On an external server (NATSURL), Credentials is a directory of
	// nkey seed files, <name>.nk, as the embedded shop writes them: each
	// service connects as itself, and the admin (admin.nk, if there)
	// provisions. Auth is one identity for every service instead (from
	// kit.AuthFlags: --creds, --nkey or --user), which must be allowed
	// all they do. Neither: no authentication. TLS then holds the client's
	// files: CA verifies the server, Cert and Key are the client's.
	Credentials string
	Auth        []nats.Option
	// Gateway are the gateway's options (allowed hosts, limits).
	Gateway []gateway.Option
	// MetricsAddr, when set, is the admin listener (host:port): the
	// services' Prometheus /metrics and the gateway's POST /admin/rebuild.
	MetricsAddr string
	// ConsoleAddr, when set, is where the operator console (saga/console)
	// listens, acting with the admin's identity: a loopback host:port only.
	// When its port is taken, the next free one of the ten after it is
	// used, or else any free port. No console without the admin's identity (joining a server
	// without it).
	ConsoleAddr string
	// KeyFile, when set, is a key ring file (saga.LoadKeyRing): every
	// service, and the console, seal the payloads choreo stores with it.
	KeyFile string
}

// Shop is a running shop.
type Shop struct {
	HTTPAddr    string
	MetricsAddr string // the admin listener's, with Config.MetricsAddr
	ConsoleAddr string // the operator console's, with Config.ConsoleAddr and the admin's identity
	ConsoleURL  string // the console's address with its token (this run's): what to open
	// OperatorToken is this run's operator token: the console's, and what
	// lists every customer and order at the gateway (Authorization: Bearer).
	OperatorToken string
	NATSURL       string
	Gateway       *gateway.Service
	Deps          kit.Deps // the admin's (zero when joining a server without its identity)
	Running       []string // the services this shop runs
	// Credentials is the directory of the embedded server's identities'
	// nkey seed files, <name>.nk ("" on an external server).
	Credentials string
}

// TokenKeyFile is the file, in the credentials directory, of the key that
// signs customers' tokens (gateway.TokenKeyFile).
const TokenKeyFile = "customer-tokens.key"

// AdminCLI is a nats CLI command that looks in with the admin identity.
func (s *Shop) AdminCLI() string {
	if s.Credentials == "" {
		return "nats --server " + s.NATSURL + " stream ls"
	}
	return "nats --server " + s.NATSURL + " --nkey " + embedded.SeedFile(s.Credentials, Admin) + " stream ls"
}

// Identities loads or creates the key of the admin and of each service in
// dir, and returns them as the server's users, each service with its
// permissions (Permissions), the admin with all.
func Identities(dir string) ([]*server.NkeyUser, map[string]nkeys.KeyPair, error) {
	perms, err := Permissions()
	if err != nil {
		return nil, nil, err
	}
	kps, err := embedded.Credentials(dir, append(slices.Clone(Services), Admin))
	if err != nil {
		return nil, nil, err
	}
	var users []*server.NkeyUser
	for name, kp := range kps {
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, nil, err
		}
		u := &server.NkeyUser{Nkey: pub}
		if name != Admin {
			a := perms[name]
			u.Permissions = &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: a.Publish.Allow, Deny: a.Publish.Deny},
				Subscribe: &server.SubjectPermission{Allow: a.Subscribe.Allow, Deny: a.Subscribe.Deny},
			}
			if a.Responses {
				u.Permissions.Response = &server.ResponsePermission{MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION}
			}
		}
		users = append(users, u)
	}
	return users, kps, nil
}

// Provision creates, with the admin's connection, what the services use:
// choreo's streams, the event streams and every service's buckets. It
// returns the admin's dependencies.
func Provision(ctx context.Context, nc *nats.Conn, logger *slog.Logger, opts ...kit.DepsOption) (kit.Deps, error) {
	d, err := kit.NewDeps(ctx, nc, Admin, logger, opts...)
	if err != nil {
		return kit.Deps{}, fmt.Errorf("provision: %w", err)
	}
	for _, name := range Services {
		for _, b := range Buckets[name] {
			open := kit.OpenStore
			if b == payment.TokenBucket {
				open = func(ctx context.Context, js jetstream.JetStream, b string) (*kit.Store, error) {
					return kit.OpenExpiringStore(ctx, js, b, payment.TokenTTL)
				}
			}
			if _, err := open(ctx, d.JS, b); err != nil {
				return kit.Deps{}, fmt.Errorf("provision: %w", err)
			}
		}
	}
	return d, nil
}

// Services names every service Run starts.
var Services = []string{"customer", "order", "payment", "inventory", "billing", "shipping", "carrier", "notification", "gateway"}

// Run starts the shop, calls ready once it serves, and runs until ctx
// ends. A bad configuration is an error before anything starts.
func Run(ctx context.Context, cfg Config, ready func(*Shop)) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	run, err := Selected(cfg.Only, cfg.Without)
	if err != nil {
		return err
	}
	// A bad address stops start-up before anything starts.
	if slices.Contains(run, "gateway") {
		if err := checkAddr("--http-addr", cfg.HTTPAddr); err != nil {
			return err
		}
	}
	if cfg.NATSURL == "" {
		if err := checkAddr("--nats-addr", cfg.NATSAddr); err != nil {
			return err
		}
	}
	keyOpts, err := kit.KeyOptions(cfg.KeyFile)
	if err != nil {
		return err
	}
	var consoleLn net.Listener
	if cfg.ConsoleAddr != "" {
		if err := checkLoopback("--console-addr", cfg.ConsoleAddr); err != nil {
			return err
		}
		if consoleLn, err = listenFree(cfg.ConsoleAddr, 10); err != nil {
			return fmt.Errorf("--console-addr %s: %w", cfg.ConsoleAddr, err)
		}
		defer consoleLn.Close()
	}
	admin := kit.NewAdmin(nil) // no metrics, nothing counted, without an address
	var adminLn net.Listener
	if cfg.MetricsAddr != "" {
		admin = kit.NewAdmin(kit.NewMetrics())
		var err error
		if adminLn, err = admin.Listen(cfg.MetricsAddr); err != nil {
			return err
		}
		defer adminLn.Close()
	}
	url := cfg.NATSURL
	var keys map[string]nkeys.KeyPair // one per identity; none on an external server
	var credDir string
	var common []nats.Option              // every connection's: in-process to the embedded server, TLS to an external one
	var external map[string][]nats.Option // on an external server, each identity's options
	if url == "" && (cfg.Credentials != "" || len(cfg.Auth) > 0) {
		return errors.New("--credentials, --creds, --nkey and --user are for an external server: give --nats-url too")
	}
	if url == "" {
		if cfg.DataDir == "" {
			return errors.New("--data-dir is empty")
		}
		// DATA-DIR holds the credentials, the broker's store and the
		// e-mails: the shop creates it, and each directory in it, 0700.
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		credDir = filepath.Join(cfg.DataDir, "credentials")
		ids, kps, err := Identities(credDir)
		if err != nil {
			return err
		}
		keys = kps
		srv, err := embedded.Start(embedded.Config{Addr: cfg.NATSAddr, DataDir: filepath.Join(cfg.DataDir, "jetstream"), SyncAlways: true, Users: ids, TLS: cfg.TLS})
		if err != nil {
			return err
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		url = srv.ClientURL() // tls://… with TLS
		// The services in this process need no network (nor TLS) to
		// reach the server in it: the URL only names it.
		common = append(common, nats.InProcessServer(srv))
	} else {
		if external, err = externalAuth(cfg, run); err != nil {
			return err
		}
		tlsConf, err := kit.ClientTLS(cfg.TLS.CA, cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return err
		}
		if tlsConf != nil {
			common = append(common, nats.Secure(tlsConf)) // options every connection takes
		}
	}
	if cfg.MailDir == "" {
		cfg.MailDir = filepath.Join(cfg.DataDir, "mail")
	}
	connectURL := url
	if cfg.NATSURL == "" {
		connectURL = "nats://" + strings.TrimPrefix(url, "tls://")
	}
	connect := func(name string) (*nats.Conn, error) {
		opts := []nats.Option{nats.Name("choreo-" + name), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond),
			nats.CustomInboxPrefix(access.InboxPrefix(name)),
			// A refused publish or subscription is only reported here.
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				cfg.Logger.Warn("nats", "identity", name, "err", err)
			})}
		if kp := keys[name]; kp != nil {
			pub, _ := kp.PublicKey()
			opts = append(opts, nats.Nkey(pub, kp.Sign))
		}
		opts = append(opts, external[name]...)
		opts = append(opts, common...)
		nc, err := nats.Connect(connectURL, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect to %s as %s: %w", url, name, err)
		}
		return nc, nil
	}
	// The admin provisions the streams and buckets; each service then
	// connects with its own identity, which may use them but not create
	// them. Joining a server without the admin's identity, the shop
	// takes what is provisioned as it is.
	var provisioned kit.Deps
	if _, ok := external[Admin]; ok || cfg.NATSURL == "" {
		nc, err := connect(Admin)
		if err != nil {
			return err
		}
		defer nc.Close()
		if provisioned, err = Provision(ctx, nc, cfg.Logger, keyOpts...); err != nil {
			return err
		}
	}
	// A token per run for the operator: the console's, and the gateway's
	// for everyone's data. Another user of this machine who reaches the
	// ports must not act as the admin nor read the customers.
	operatorToken := console.NewToken()
	gwOpts := []gateway.Option{gateway.WithOperatorToken(operatorToken)}
	if credDir != "" {
		key, err := gateway.TokenKeyFile(filepath.Join(credDir, TokenKeyFile))
		if err != nil {
			return err
		}
		gwOpts = append(gwOpts, gateway.WithCustomerTokens(key, 0))
	}
	if consoleLn != nil && provisioned.Sagas != nil {
		// The shop's page links each order to its saga in the console
		// (the address, never the token: the operator's browser holds it).
		gwOpts = append(gwOpts, gateway.WithConsoleURL("http://"+consoleLn.Addr().String()+"/"))
	}
	g, gctx := errgroup.WithContext(ctx)
	var gw *gateway.Service
	for _, name := range run {
		snc, err := connect(name)
		if err != nil {
			return err
		}
		defer snc.Close()
		d, err := kit.NewDeps(ctx, snc, name, cfg.Logger, append(keyOpts, kit.WithAdmin(admin))...)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		var run func(context.Context) error
		if name == "gateway" {
			gw = gateway.New(d, cfg.HTTPAddr, append(gwOpts, cfg.Gateway...)...)
			admin.Mux.Handle("POST /admin/rebuild", gw.RebuildHandler())
			run = gw.Run
		} else {
			run = Service(name, d, cfg.MailDir)
		}
		g.Go(func() error {
			if err := run(gctx); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	if adminLn != nil {
		g.Go(func() error { return admin.Serve(gctx, adminLn) })
	}
	sh := &Shop{NATSURL: url, Gateway: gw, Deps: provisioned, Credentials: credDir, Running: run, OperatorToken: operatorToken}
	if consoleLn != nil && provisioned.Sagas != nil {
		ln := consoleLn
		sh.ConsoleAddr = ln.Addr().String()
		token := operatorToken
		sh.ConsoleURL = "http://" + sh.ConsoleAddr + "/?token=" + token
		// The console's own mux: the admin listener's has no console, nor
		// the console the admin listener's /metrics.
		con := kit.NewAdmin(nil)
		con.Mux.Handle("/", console.Handler(provisioned.Sagas, provisioned.Ops, console.WithTitle("shop"), console.WithToken(token)))
		g.Go(func() error { return con.Serve(gctx, ln) })
	}
	if adminLn != nil {
		sh.MetricsAddr = adminLn.Addr().String()
	}
	if gw != nil {
		select {
		case sh.HTTPAddr = <-gw.Addr():
		case <-gctx.Done():
			return g.Wait()
		}
	}
	if ready != nil {
		ready(sh)
	}
	return g.Wait()
}

// Selected returns the services to run, in the order Run starts them:
// those of only (all when empty) less those of without. An unknown name,
// or both lists given, is an error.
func Selected(only, without []string) ([]string, error) {
	if len(only) > 0 && len(without) > 0 {
		return nil, errors.New("give --only or --without, not both")
	}
	for _, l := range []struct {
		flag  string
		names []string
	}{{"--only", only}, {"--without", without}} {
		for _, n := range l.names {
			if !slices.Contains(Services, n) {
				return nil, fmt.Errorf("%s: no service %q (the services: %s)", l.flag, n, strings.Join(Services, ", "))
			}
		}
	}
	var out []string
	for _, n := range Services {
		if (len(only) == 0 || slices.Contains(only, n)) && !slices.Contains(without, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--without leaves no service to run")
	}
	return out, nil
}

// externalAuth returns the connection options of each identity that
// connects to an external server: the services to run and, when its seed
// is in the credentials directory or one identity serves all, the admin.
func externalAuth(cfg Config, run []string) (map[string][]nats.Option, error) {
	out := map[string][]nats.Option{}
	switch {
	case cfg.Credentials != "" && len(cfg.Auth) > 0:
		return nil, errors.New("give --credentials (an identity per service) or one of --creds, --nkey and --user, not both")
	case cfg.Credentials != "":
		if fi, err := os.Stat(cfg.Credentials); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("--credentials %s: not a directory", cfg.Credentials)
		}
		for _, name := range append(slices.Clone(run), Admin) {
			path := embedded.SeedFile(cfg.Credentials, name)
			if _, err := os.Stat(path); err != nil {
				if name == Admin {
					continue // the services' identities cannot provision: what is there is used
				}
				return nil, fmt.Errorf("--credentials %s: no seed for %s (%s.nk)", cfg.Credentials, name, name)
			}
			opt, err := nats.NkeyOptionFromSeed(path)
			if err != nil {
				return nil, fmt.Errorf("--credentials: %s: not an nkey seed file", path)
			}
			out[name] = []nats.Option{opt}
		}
	default:
		for _, name := range append(slices.Clone(run), Admin) {
			out[name] = cfg.Auth
		}
	}
	return out, nil
}

// Service returns the Run of the named service (not the gateway, which
// has an address: gateway.New), or nil for an unknown name.
func Service(name string, d kit.Deps, mailDir string) func(context.Context) error {
	switch name {
	case "customer":
		return customer.New(d).Run
	case "order":
		return order.New(d).Run
	case "payment":
		return payment.New(d).Run
	case "inventory":
		return inventory.New(d).Run
	case "billing":
		return billing.New(d).Run
	case "shipping":
		return shipping.New(d).Run
	case "carrier":
		return carrier.New(d).Run
	case "notification":
		return notification.New(d, mailDir).Run
	}
	return nil
}

// checkAddr says what is wrong with a host:port, if anything.
func checkAddr(flag, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: want host:port", flag, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s %q: bad port", flag, addr)
	}
	return nil
}

// checkLoopback says what is wrong with a host:port that must be on this
// machine only, if anything.
func checkLoopback(flag, addr string) error {
	if err := checkAddr(flag, addr); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s %q: the console acts as the admin, so it listens on a loopback address only (127.0.0.1:PORT); from elsewhere, run `choreo console` with your own identity", flag, addr)
	}
	return nil
}

// listenFree listens on addr or, when its port is taken, on the first
// free one of the next n ports, or else on any free port: several shops
// on one machine (tests, a second terminal) each get a console.
func listenFree(addr string, n int) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	host, ps, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(ps)
	for i := 1; err != nil && errors.Is(err, syscall.EADDRINUSE) && port > 0 && i <= n+1; i++ {
		next := port + i
		if i > n || next > 65535 {
			next = 0
		}
		ln, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(next)))
	}
	return ln, err
}

// EnvOr returns the environment variable's value, or def.
func EnvOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
