package kit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/nats-io/nats.go"
)

// Main runs one service alone against an external nats-server: the thin
// main of services/cmd/<name>. flags adds the service's own flags.
//
// The service authenticates the usual NATS ways: --creds FILE (a .creds
// file), --nkey FILE (an nkey seed file, as the shop writes them), or
// --user NAME with the password from the environment variable
// CHOREO_NATS_PASSWORD or from --password-file FILE (never on the command
// line). Its inbox prefix is access.InboxPrefix(name), which its
// permissions allow (see access.Permissions).
func Main(name string, flags func(fs *flag.FlagSet), run func(ctx context.Context, d Deps) error) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	url := fs.String("nats", envOr("CHOREO_NATS", "nats://127.0.0.1:4222"), "the nats-server to use (env CHOREO_NATS)")
	var a Auth
	fs.StringVar(&a.Creds, "creds", envOr("CHOREO_NATS_CREDS", ""), "a NATS credentials (.creds) file (env CHOREO_NATS_CREDS)")
	fs.StringVar(&a.NKey, "nkey", envOr("CHOREO_NATS_NKEY", ""), "an nkey seed file (env CHOREO_NATS_NKEY)")
	fs.StringVar(&a.User, "user", envOr("CHOREO_NATS_USER", ""), "a NATS user; its password from env CHOREO_NATS_PASSWORD or --password-file (env CHOREO_NATS_USER)")
	fs.StringVar(&a.PasswordFile, "password-file", "", "a file holding the --user's password")
	healthAddr := fs.String("health-addr", envOr("CHOREO_HEALTH_ADDR", ""), "host:port of a GET /healthz for probes: 200 while connected to the broker (env CHOREO_HEALTH_ADDR; default off)")
	ca := fs.String("tls-ca", envOr("CHOREO_TLS_CA", ""), "PEM file of the CA that signed the server's certificate: connect with TLS (env CHOREO_TLS_CA)")
	cert := fs.String("tls-cert", envOr("CHOREO_TLS_CERT", ""), "PEM file of this service's client certificate, for a server that verifies clients (env CHOREO_TLS_CERT)")
	key := fs.String("tls-key", envOr("CHOREO_TLS_KEY", ""), "PEM file of the client certificate's key (env CHOREO_TLS_KEY)")
	level := fs.String("log-level", envOr("CHOREO_LOG_LEVEL", "info"), "debug, info, warn or error; JSON lines when stderr is not a terminal (env CHOREO_LOG_LEVEL)")
	keyFile := fs.String("key-file", envOr("CHOREO_KEY_FILE", ""), "a key ring file (lines \"<id> <base64 AES key>\", newest first): encrypt the payloads choreo stores with it (env CHOREO_KEY_FILE; default off)")
	metricsAddr := fs.String("metrics-addr", envOr("CHOREO_METRICS_ADDR", ""), "host:port of the admin listener: Prometheus /metrics (and the gateway's POST /admin/rebuild); none when empty (env CHOREO_METRICS_ADDR)")
	if flags != nil {
		flags(fs)
	}
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		os.Exit(2)
	}
	a.Password, a.passwordSet = os.LookupEnv("CHOREO_NATS_PASSWORD")
	authOpts, err := a.Options()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	depsOpts, err := KeyOptions(*keyFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	logger, err := NewLogger(os.Stderr, *level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	admin := NewAdmin(nil) // no metrics, nothing counted, without --metrics-addr
	var adminLn net.Listener
	if *metricsAddr != "" {
		admin = NewAdmin(NewMetrics())
		if adminLn, err = admin.Listen(*metricsAddr); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(2)
		}
		go func() {
			if err := admin.Serve(ctx, adminLn); err != nil {
				logger.Error("admin listener", "err", err)
			}
		}()
	}
	shutdown, err := Tracing(ctx, name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(sctx) // flush the spans not yet exported
	}()
	tlsConf, err := ClientTLS(*ca, *cert, *key)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	var health *HealthServer
	if *healthAddr != "" {
		if health, err = ListenHealth(*healthAddr); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(2)
		}
	}
	opts := append([]nats.Option{nats.Name("choreo-" + name), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond),
		nats.CustomInboxPrefix(access.InboxPrefix(name)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { logger.Warn("nats", "err", err) })}, authOpts...)
	if tlsConf != nil {
		opts = append(opts, nats.Secure(tlsConf))
	}
	nc, err := nats.Connect(*url, opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: connect to %s: %v\n", name, *url, err)
		os.Exit(1)
	}
	if health != nil {
		hctx, stopHealth := context.WithCancel(ctx)
		served := make(chan struct{})
		go func() { defer close(served); _ = health.Serve(hctx, nc) }()
		defer func() { stopHealth(); <-served }()
	}
	defer nc.Close()
	d, err := NewDeps(ctx, nc, name, logger, append(depsOpts, WithAdmin(admin))...)
	if err == nil {
		fmt.Printf("%s running against %s\n", name, *url)
		if adminLn != nil {
			fmt.Printf("%s metrics on http://%s/metrics\n", name, adminLn.Addr())
		}
		err = run(ctx, d)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Auth is how a service authenticates to the nats-server: at most one of
// a credentials file, an nkey seed file, or a user and password.
type Auth struct {
	Creds        string // a .creds file
	NKey         string // an nkey seed file
	User         string
	Password     string // from the environment
	PasswordFile string

	passwordSet bool
}

// Options checks the settings and returns the connection options they
// make; the error is one line saying what is wrong.
func (a Auth) Options() ([]nats.Option, error) {
	n := 0
	for _, s := range []string{a.Creds, a.NKey, a.User} {
		if s != "" {
			n++
		}
	}
	switch {
	case n > 1:
		return nil, errors.New("give one of --creds, --nkey and --user, not several")
	case a.PasswordFile != "" && a.User == "":
		return nil, errors.New("--password-file needs --user")
	case a.Password != "" && a.User == "":
		return nil, errors.New("CHOREO_NATS_PASSWORD is set but --user is not")
	}
	switch {
	case a.Creds != "":
		if err := readable(a.Creds); err != nil {
			return nil, fmt.Errorf("--creds: %w", err)
		}
		return []nats.Option{nats.UserCredentials(a.Creds)}, nil
	case a.NKey != "":
		if err := readable(a.NKey); err != nil {
			return nil, fmt.Errorf("--nkey: %w", err)
		}
		opt, err := nats.NkeyOptionFromSeed(a.NKey)
		if err != nil {
			return nil, fmt.Errorf("--nkey %s: not an nkey seed file: %v", a.NKey, oneLine(err))
		}
		return []nats.Option{opt}, nil
	case a.User != "":
		pw := a.Password
		switch {
		case a.PasswordFile != "" && a.passwordSet:
			return nil, errors.New("give the password in CHOREO_NATS_PASSWORD or --password-file, not both")
		case a.PasswordFile != "":
			data, err := os.ReadFile(a.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("--password-file: %v", oneLine(err))
			}
			pw = strings.TrimRight(string(data), "\r\n")
		}
		if pw == "" {
			return nil, errors.New("--user needs a password: set CHOREO_NATS_PASSWORD or give --password-file")
		}
		return []nats.Option{nats.UserInfo(a.User, pw)}, nil
	}
	return nil, nil
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return errors.New(oneLine(err))
	}
	return f.Close()
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// KeyOptions reads the key ring file of --key-file (CHOREO_KEY_FILE): the
// option that has a service encrypt the payloads it stores, none for "".
// Its error is one line naming the file.
func KeyOptions(path string) ([]DepsOption, error) {
	if path == "" {
		return nil, nil
	}
	r, err := saga.LoadKeyRing(path)
	if err != nil {
		return nil, fmt.Errorf("--key-file: %w", err)
	}
	return []DepsOption{WithKeyRing(r)}, nil
}
