// Command shop runs the example shop: an embedded nats-server, every
// service and the gateway, in one process. With --nats-url it joins an
// existing server instead, and --only or --without run a part of the
// services, so that one service can be stopped and started on its own.
//
//	go run ./services/cmd/shop [--http-addr 127.0.0.1:8080] [--nats-addr 127.0.0.1:4222] [--data-dir ./data] [--allowed-hosts shop.example.com]
//	    [--tls-cert server.pem --tls-key server-key.pem [--tls-ca ca.pem]]
//	    [--only inventory,payment | --without inventory] [--console-addr 127.0.0.1:8081]
//	go run ./services/cmd/shop --nats-url nats://127.0.0.1:4222 --credentials ./data/credentials --only inventory
//
// A shop that joins a server (--nats-url) starts no operator console
// unless --console-addr asks for one: the shop that runs the server has it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/choreo-go/choreo/services/gateway"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/shop"
)

func main() {
	var cfg shop.Config
	flag.StringVar(&cfg.HTTPAddr, "http-addr", shop.EnvOr("CHOREO_HTTP_ADDR", "127.0.0.1:8080"), "where the web UI and API listen (env CHOREO_HTTP_ADDR)")
	flag.StringVar(&cfg.NATSAddr, "nats-addr", shop.EnvOr("CHOREO_NATS_ADDR", "127.0.0.1:4222"), "where the embedded nats-server listens (env CHOREO_NATS_ADDR)")
	flag.StringVar(&cfg.NATSURL, "nats-url", shop.EnvOr("CHOREO_NATS_URL", ""), "join this nats-server or cluster (nats://host:port[,…]) instead of embedding one (env CHOREO_NATS_URL)")
	flag.StringVar(&cfg.Credentials, "credentials", shop.EnvOr("CHOREO_CREDENTIALS", ""), "with --nats-url: a directory of nkey seeds, <service>.nk, each service's identity (the embedded shop writes DATA-DIR/credentials) (env CHOREO_CREDENTIALS)")
	auth := kit.AuthFlags(flag.CommandLine)
	only := flag.String("only", shop.EnvOr("CHOREO_ONLY", ""), "run only these services, comma-separated (of "+strings.Join(shop.Services, ",")+") (env CHOREO_ONLY)")
	without := flag.String("without", shop.EnvOr("CHOREO_WITHOUT", ""), "run every service but these, comma-separated (env CHOREO_WITHOUT)")
	flag.StringVar(&cfg.DataDir, "data-dir", shop.EnvOr("CHOREO_DATA_DIR", "./data"), "where the server stores streams and the shop writes e-mails (env CHOREO_DATA_DIR)")
	flag.StringVar(&cfg.MailDir, "mail-dir", shop.EnvOr("CHOREO_MAIL_DIR", ""), "where e-mails are written as .eml files (default DATA-DIR/mail; env CHOREO_MAIL_DIR)")
	hosts := flag.String("allowed-hosts", shop.EnvOr("CHOREO_ALLOWED_HOSTS", ""), "comma-separated host names (or name:port) browsers may use besides localhost and IP addresses (env CHOREO_ALLOWED_HOSTS)")
	maxWS := flag.Int("max-websockets", gateway.DefaultMaxWebsockets, "how many browsers may follow the shop live at once")
	flag.StringVar(&cfg.TLS.Cert, "tls-cert", shop.EnvOr("CHOREO_TLS_CERT", ""), "PEM certificate: the embedded nats-server requires TLS of its clients; with --nats-url, this shop's client certificate (env CHOREO_TLS_CERT)")
	flag.StringVar(&cfg.TLS.Key, "tls-key", shop.EnvOr("CHOREO_TLS_KEY", ""), "PEM key of --tls-cert (env CHOREO_TLS_KEY)")
	flag.StringVar(&cfg.TLS.CA, "tls-ca", shop.EnvOr("CHOREO_TLS_CA", ""), "PEM CA: clients must present a certificate it signed; with --nats-url, the CA of the server's certificate (env CHOREO_TLS_CA)")
	flag.StringVar(&cfg.KeyFile, "key-file", shop.EnvOr("CHOREO_KEY_FILE", ""), "a key ring file (lines \"<id> <base64 AES key>\", newest first): every service encrypts the payloads choreo stores with it (env CHOREO_KEY_FILE; default off)")
	verbose := flag.Bool("v", false, "log what the services do (--log-level info)")
	level := flag.String("log-level", shop.EnvOr("CHOREO_LOG_LEVEL", "warn"), "debug, info, warn or error; JSON lines when stderr is not a terminal (env CHOREO_LOG_LEVEL)")
	flag.StringVar(&cfg.MetricsAddr, "metrics-addr", shop.EnvOr("CHOREO_METRICS_ADDR", ""), "host:port of the admin listener: Prometheus /metrics and POST /admin/rebuild; none when empty (env CHOREO_METRICS_ADDR)")
	flag.StringVar(&cfg.ConsoleAddr, "console-addr", shop.EnvOr("CHOREO_CONSOLE_ADDR", ""), "loopback host:port of the operator console (dead letters, parked sagas, live flows), acting as the admin; the next free port when taken; default 127.0.0.1:8081 for a shop with its own server, none for one that joins a server with --nats-url (the first shop's console is there); none when empty (env CHOREO_CONSOLE_ADDR)")
	flag.Parse()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(2)
	}
	if flag.NArg() > 0 {
		fail(fmt.Errorf("unexpected argument %q", flag.Arg(0)))
	}
	var err error
	if cfg.Auth, err = auth(); err != nil {
		fail(err)
	}
	cfg.ConsoleAddr = consoleAddr(cfg.ConsoleAddr, given("console-addr", "CHOREO_CONSOLE_ADDR"), cfg.NATSURL != "")
	cfg.Only, cfg.Without = list(*only), list(*without)
	if _, err := shop.Selected(cfg.Only, cfg.Without); err != nil {
		fail(err)
	}
	cfg.Gateway = []gateway.Option{gateway.AllowHosts(strings.Split(*hosts, ",")...), gateway.MaxWebsockets(*maxWS)}
	if *verbose {
		*level = "info"
	}
	logger, err := kit.NewLogger(os.Stderr, *level)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(2)
	}
	cfg.Logger = logger
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutdown, err := kit.Tracing(ctx, "shop")
	if err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(2)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}()
	err = shop.Run(ctx, cfg, func(s *shop.Shop) {
		fmt.Printf("choreo shop is running: %s\n", strings.Join(s.Running, ", "))
		if s.HTTPAddr != "" {
			fmt.Printf("  web UI and API  http://%s\n", s.HTTPAddr)
			fmt.Printf("  operator API    curl -H 'Authorization: Bearer %s' http://%s/api/customers (every customer and order; this run's token)\n", s.OperatorToken, s.HTTPAddr)
		}
		if cfg.NATSURL == "" {
			fmt.Printf("  nats-server     %s (one identity per service, no anonymous access)\n  nats CLI        %s\n", s.NATSURL, s.AdminCLI())
			fmt.Printf("  join it         go run ./services/cmd/shop --nats-url nats://%s --credentials %s --only SERVICE\n", strings.TrimPrefix(strings.TrimPrefix(s.NATSURL, "nats://"), "tls://"), s.Credentials)
		} else {
			fmt.Printf("  nats-server     %s (joined)\n", s.NATSURL)
		}
		if s.ConsoleAddr != "" {
			fmt.Printf("  console         %s (operator console: acts as the admin; this run's token)\n", s.ConsoleURL)
			if s.ConsoleAddr != cfg.ConsoleAddr {
				fmt.Printf("                  (%s was taken, by another shop's console?: this is a second console)\n", cfg.ConsoleAddr)
			}
		}
		if s.MetricsAddr != "" {
			fmt.Printf("  metrics         http://%s/metrics\n", s.MetricsAddr)
		}
		fmt.Printf("  data            %s\n", cfg.DataDir)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(1)
	}
}

// defaultConsoleAddr is the console's address when none is given.
const defaultConsoleAddr = "127.0.0.1:8081"

// consoleAddr is where the console listens: addr when it was given (by
// flag or environment; empty: no console), else the default for a shop
// that runs its own server, and none for one that joins a server (the
// shop that runs it has the console: a second one, on the next free
// port, would only confuse).
func consoleAddr(addr string, given, joining bool) string {
	switch {
	case given:
		return addr
	case joining:
		return ""
	default:
		return defaultConsoleAddr
	}
}

// given reports whether the flag was set on the command line or its
// environment variable is set.
func given(name, env string) bool {
	if _, ok := os.LookupEnv(env); ok {
		return true
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// list splits a comma-separated flag.
func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
