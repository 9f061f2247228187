// Command shipping runs the shop's shipping service alone against a nats-server.
//
//	go run ./services/cmd/shipping --nats nats://127.0.0.1:4222
package main

import (
	"context"

	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/shipping"
)

func main() {
	kit.Main("shipping", nil, func(ctx context.Context, d kit.Deps) error { return shipping.New(d).Run(ctx) })
}
