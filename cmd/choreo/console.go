package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/choreo-go/choreo/saga/console"
)

// The console verb: the operator console (saga/console) served with the
// command line's own connection, so that the operator's identity does the
// acts.
//
//	choreo [connection flags] console [--addr 127.0.0.1:8223] [--allow-remote] [--allowed-hosts NAMES]

// consoleReady is told the console's URL once it listens, and given what
// stops it (tests).
var consoleReady = func(url string, stop func()) {}

func consoleServe(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8223", "")
	remote := fs.Bool("allow-remote", false, "")
	hosts := fs.String("allowed-hosts", "", "")
	if _, err := parse(fs, args, 0, "only flags"); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return usagef("--addr %q: want host:port", *addr)
	}
	if !*remote && !loopback(host) {
		return usagef("--addr %s is not a loopback address: the console acts with your identity; pass --allow-remote to serve it there (behind what authenticates operators)", *addr)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %v", *addr, err)
	}
	defer ln.Close()
	// The command's --timeout bounds each call, not the console: it runs
	// until interrupted.
	ctx, stop := signal.NotifyContext(context.WithoutCancel(ctx), os.Interrupt, syscall.SIGTERM)
	defer stop()
	token := console.NewToken() // anyone else who reaches the address must not act as you
	srv := &http.Server{
		Handler:           console.Handler(k.c, k.op, console.AllowHosts(strings.Split(*hosts, ",")...), console.WithToken(token)),
		ReadHeaderTimeout: 5 * time.Second,
	}
	url := "http://" + ln.Addr().String() + "/?token=" + token
	fmt.Fprintf(k.out, "console on %s (interrupt to stop)\n", url)
	consoleReady(url, stop)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("console: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

// loopback reports whether host names only this machine: localhost or a
// loopback IP address. An empty host (every interface) does not.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
