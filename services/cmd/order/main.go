// Command order runs the shop's order service alone against a nats-server.
//
//	go run ./services/cmd/order --nats nats://127.0.0.1:4222
package main

import (
	"context"

	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/order"
)

func main() {
	kit.Main("order", nil, func(ctx context.Context, d kit.Deps) error { return order.New(d).Run(ctx) })
}
