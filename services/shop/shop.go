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
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/choreo-go/choreo/internal/embedded"
	"github.com/choreo-go/choreo/services/billing"
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
	// Without lists services not to start (for tests that stop one).
	Without []string
}

// Shop is a running shop.
type Shop struct {
	HTTPAddr string
	NATSURL  string
	Gateway  *gateway.Service
	Deps     kit.Deps
}

// Services names every service Run starts.
var Services = []string{"customer", "order", "payment", "inventory", "billing", "shipping", "notification", "gateway"}

// Run starts the shop, calls ready once it serves, and runs until ctx
// ends. A bad configuration is an error before anything starts.
func Run(ctx context.Context, cfg Config, ready func(*Shop)) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// A bad address stops start-up before anything starts.
	if err := checkAddr("--http-addr", cfg.HTTPAddr); err != nil {
		return err
	}
	if cfg.NATSURL == "" {
		if err := checkAddr("--nats-addr", cfg.NATSAddr); err != nil {
			return err
		}
	}
	url := cfg.NATSURL
	opts := []nats.Option{nats.Name("choreo-shop"), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}
	if url == "" {
		if cfg.DataDir == "" {
			return errors.New("--data-dir is empty")
		}
		srv, err := embedded.Start(embedded.Config{Addr: cfg.NATSAddr, DataDir: filepath.Join(cfg.DataDir, "jetstream"), SyncAlways: true, TLS: cfg.TLS})
		if err != nil {
			return err
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		url = srv.ClientURL() // tls://… with TLS
		// The services in this process need no network (nor TLS) to
		// reach the server in it: the URL only names it.
		opts = append(opts, nats.InProcessServer(srv))
	} else if cfg.TLS.On() {
		return errors.New("--tls-cert, --tls-key and --tls-ca configure the embedded server, not an external one")
	}
	if cfg.MailDir == "" {
		cfg.MailDir = filepath.Join(cfg.DataDir, "mail")
	}
	connectURL := url
	if cfg.NATSURL == "" {
		connectURL = "nats://" + strings.TrimPrefix(url, "tls://")
	}
	nc, err := nats.Connect(connectURL, opts...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", url, err)
	}
	defer nc.Close()
	skip := map[string]bool{}
	for _, s := range cfg.Without {
		skip[s] = true
	}
	g, gctx := errgroup.WithContext(ctx)
	var gw *gateway.Service
	var deps kit.Deps
	for _, name := range Services {
		if skip[name] {
			continue
		}
		d, err := kit.NewDeps(ctx, nc, name, cfg.Logger)
		if err != nil {
			return err
		}
		deps = d
		var run func(context.Context) error
		if name == "gateway" {
			gw = gateway.New(d, cfg.HTTPAddr)
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
	sh := &Shop{NATSURL: url, Gateway: gw, Deps: deps}
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

// EnvOr returns the environment variable's value, or def.
func EnvOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
