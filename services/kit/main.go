package kit

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
)

// Main runs one service alone against an external nats-server: the thin
// main of services/cmd/<name>. flags adds the service's own flags.
func Main(name string, flags func(fs *flag.FlagSet), run func(ctx context.Context, d Deps) error) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	url := fs.String("nats", envOr("CHOREO_NATS", "nats://127.0.0.1:4222"), "the nats-server to use (env CHOREO_NATS)")
	ca := fs.String("tls-ca", envOr("CHOREO_TLS_CA", ""), "PEM file of the CA that signed the server's certificate: connect with TLS (env CHOREO_TLS_CA)")
	cert := fs.String("tls-cert", envOr("CHOREO_TLS_CERT", ""), "PEM file of this service's client certificate, for a server that verifies clients (env CHOREO_TLS_CERT)")
	key := fs.String("tls-key", envOr("CHOREO_TLS_KEY", ""), "PEM file of the client certificate's key (env CHOREO_TLS_KEY)")
	if flags != nil {
		flags(fs)
	}
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tlsConf, err := ClientTLS(*ca, *cert, *key)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	opts := []nats.Option{nats.Name("choreo-" + name), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}
	if tlsConf != nil {
		opts = append(opts, nats.Secure(tlsConf))
	}
	nc, err := nats.Connect(*url, opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: connect to %s: %v\n", name, *url, err)
		os.Exit(1)
	}
	defer nc.Close()
	d, err := NewDeps(ctx, nc, name, logger)
	if err == nil {
		fmt.Printf("%s running against %s\n", name, *url)
		err = run(ctx, d)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
