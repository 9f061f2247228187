// Command gateway runs the shop's gateway (API, web UI, websocket) alone
// against a nats-server.
//
//	go run ./services/cmd/gateway --nats nats://127.0.0.1:4222 --http-addr 127.0.0.1:8080
package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/choreo-go/choreo/services/gateway"
	"github.com/choreo-go/choreo/services/kit"
)

func main() {
	var addr string
	kit.Main("gateway", func(fs *flag.FlagSet) {
		fs.StringVar(&addr, "http-addr", "127.0.0.1:8080", "where the web UI and API listen")
	}, func(ctx context.Context, d kit.Deps) error {
		g := gateway.New(d, addr)
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
