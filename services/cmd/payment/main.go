// Command payment runs the shop's payment service alone against a nats-server.
//
//	go run ./services/cmd/payment --nats nats://127.0.0.1:4222
package main

import (
	"context"

	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/payment"
)

func main() {
	kit.Main("payment", nil, func(ctx context.Context, d kit.Deps) error { return payment.New(d).Run(ctx) })
}
