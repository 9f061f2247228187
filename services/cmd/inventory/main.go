// Command inventory runs the shop's inventory service alone against a nats-server.
//
//	go run ./services/cmd/inventory --nats nats://127.0.0.1:4222
package main

import (
	"context"

	"github.com/choreo-go/choreo/services/inventory"
	"github.com/choreo-go/choreo/services/kit"
)

func main() {
	kit.Main("inventory", nil, func(ctx context.Context, d kit.Deps) error { return inventory.New(d).Run(ctx) })
}
