// Command choreo-provision creates, as the admin identity, what the shop's
// services use and may not create themselves: choreo's streams, the event
// streams and every service's buckets (shop.Provision). On a cluster each
// has 3 replicas. It exits once they exist, so it can run before the
// services start; running it again changes nothing. A server not up yet,
// or a cluster still electing its leaders, is waited for, up to --wait.
//
//	go run ./cmd/choreo-provision --nats tls://nats-1:4222 --nkey credentials/admin.nk --tls-ca ca.pem
//
// It connects as the services do (services/kit.Main), with the same flags
// and environment variables.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/shop"
)

func main() {
	url := flag.String("nats", shop.EnvOr("CHOREO_NATS", "nats://127.0.0.1:4222"), "the nats-servers, comma-separated (env CHOREO_NATS)")
	var a kit.Auth
	flag.StringVar(&a.Creds, "creds", shop.EnvOr("CHOREO_NATS_CREDS", ""), "the admin's credentials (.creds) file (env CHOREO_NATS_CREDS)")
	flag.StringVar(&a.NKey, "nkey", shop.EnvOr("CHOREO_NATS_NKEY", ""), "the admin's nkey seed file (env CHOREO_NATS_NKEY)")
	ca := flag.String("tls-ca", shop.EnvOr("CHOREO_TLS_CA", ""), "PEM file of the CA of the servers' certificate: connect with TLS (env CHOREO_TLS_CA)")
	cert := flag.String("tls-cert", shop.EnvOr("CHOREO_TLS_CERT", ""), "PEM file of a client certificate (env CHOREO_TLS_CERT)")
	key := flag.String("tls-key", shop.EnvOr("CHOREO_TLS_KEY", ""), "PEM file of the client certificate's key (env CHOREO_TLS_KEY)")
	wait := flag.Duration("wait", 2*time.Minute, "how long to retry while the servers are not ready")
	flag.Parse()
	if flag.NArg() > 0 {
		fail(2, fmt.Errorf("unexpected argument %q", flag.Arg(0)))
	}
	opts, err := a.Options()
	if err != nil {
		fail(2, err)
	}
	conf, err := kit.ClientTLS(*ca, *cert, *key)
	if err != nil {
		fail(2, err)
	}
	if conf != nil {
		opts = append(opts, nats.Secure(conf))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	if err := provision(ctx, *url, opts); err != nil {
		fail(1, err)
	}
	fmt.Println("choreo-provision: the streams and buckets are there")
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "choreo-provision:", err)
	os.Exit(code)
}

// provision connects and provisions, again every 2 seconds after a
// failure, until it succeeds or ctx ends; it returns the last error.
func provision(ctx context.Context, url string, opts []nats.Option) error {
	opts = append(opts, nats.Name("choreo-provision"), nats.CustomInboxPrefix(access.InboxPrefix(shop.Admin)),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	try := func() error {
		nc, err := nats.Connect(url, opts...)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", url, err)
		}
		defer nc.Close()
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err = shop.Provision(actx, nc, logger)
		return err
	}
	for {
		err := try()
		if err == nil {
			return nil
		}
		fmt.Println("choreo-provision: not yet:", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(2 * time.Second): // the servers starting, or electing leaders
		}
	}
}
