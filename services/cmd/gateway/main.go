// Command gateway runs the shop's gateway (API, web UI, websocket) alone
// against a nats-server.
//
//	go run ./services/cmd/gateway --nats nats://127.0.0.1:4222 --http-addr 127.0.0.1:8080 [--allowed-hosts shop.example.com] [--max-websockets 256] [--token-key FILE] [--operator-token FILE] [--console-url http://127.0.0.1:8081/]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/choreo-go/choreo/services/gateway"
	"github.com/choreo-go/choreo/services/kit"
)

func main() {
	var addr, hosts, keyFile, operatorFile, consoleURL string
	var maxWS int
	var tokenTTL time.Duration
	kit.Main("gateway", func(fs *flag.FlagSet) {
		fs.StringVar(&addr, "http-addr", "127.0.0.1:8080", "where the web UI and API listen")
		fs.StringVar(&hosts, "allowed-hosts", "", "comma-separated host names (or name:port) browsers may use besides localhost and IP addresses")
		fs.IntVar(&maxWS, "max-websockets", gateway.DefaultMaxWebsockets, "how many browsers may follow the shop live at once")
		fs.StringVar(&keyFile, "token-key", os.Getenv("CHOREO_TOKEN_KEY"), "file of the key that signs customers' tokens (created, mode 0600, if missing); without it tokens end with the process")
		fs.DurationVar(&tokenTTL, "token-ttl", gateway.DefaultTokenTTL, "how long a customer's token is good for")
		fs.StringVar(&operatorFile, "operator-token", os.Getenv("CHOREO_OPERATOR_TOKEN_FILE"), "file holding the operator's token, which lists every customer and order; without it nobody may")
		fs.StringVar(&consoleURL, "console-url", os.Getenv("CHOREO_CONSOLE_URL"), "the operator console's address (http://host:port/, without its token): the page links each order's saga to it (env CHOREO_CONSOLE_URL)")
	}, func(ctx context.Context, d kit.Deps) error {
		opts := []gateway.Option{gateway.AllowHosts(strings.Split(hosts, ",")...), gateway.MaxWebsockets(maxWS)}
		if keyFile != "" {
			key, err := gateway.TokenKeyFile(keyFile)
			if err != nil {
				return err
			}
			opts = append(opts, gateway.WithCustomerTokens(key, tokenTTL))
		}
		if operatorFile != "" {
			raw, err := os.ReadFile(operatorFile)
			if err != nil {
				return fmt.Errorf("--operator-token: %w", err)
			}
			opts = append(opts, gateway.WithOperatorToken(strings.TrimSpace(string(raw))))
		}
		if consoleURL != "" {
			opts = append(opts, gateway.WithConsoleURL(consoleURL))
		}
		g := gateway.New(d, addr, opts...)
		if d.Admin.Private() {
			// Unauthenticated: only on a loopback admin listener, never on
			// one other containers reach (the compose stack's, for Prometheus).
			d.Admin.Mux.Handle("POST /admin/rebuild", g.RebuildHandler())
		} else if d.Admin.Metrics != nil {
			d.Logger.Info("gateway: POST /admin/rebuild is off: the admin listener is not on a loopback address")
		}
		go func() {
			select {
			case a := <-g.Addr():
				fmt.Printf("gateway listening on http://%s\n", a)
			case <-ctx.Done():
			}
		}()
		return g.Run(ctx)
	})
}
