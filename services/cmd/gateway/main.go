// Command gateway runs the shop's gateway (API, web UI, websocket) alone
// against a nats-server.
//
//	go run ./services/cmd/gateway --nats nats://127.0.0.1:4222 --http-addr 127.0.0.1:8080 [--allowed-hosts shop.example.com] [--max-websockets 256]
package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/choreo-go/choreo/services/gateway"
	"github.com/choreo-go/choreo/services/kit"
)

func main() {
	var addr, hosts string
	var maxWS int
	kit.Main("gateway", func(fs *flag.FlagSet) {
		fs.StringVar(&addr, "http-addr", "127.0.0.1:8080", "where the web UI and API listen")
		fs.StringVar(&hosts, "allowed-hosts", "", "comma-separated host names (or name:port) browsers may use besides localhost and IP addresses")
		fs.IntVar(&maxWS, "max-websockets", gateway.DefaultMaxWebsockets, "how many browsers may follow the shop live at once")
	}, func(ctx context.Context, d kit.Deps) error {
		g := gateway.New(d, addr, gateway.AllowHosts(strings.Split(hosts, ",")...), gateway.MaxWebsockets(maxWS))
		d.Admin.Mux.Handle("POST /admin/rebuild", g.RebuildHandler()) // served with --metrics-addr
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
