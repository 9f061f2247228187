// Command customer runs the shop's customer service alone against a nats-server.
//
//	go run ./services/cmd/customer --nats nats://127.0.0.1:4222
package main

import (
	"context"

	"github.com/choreo-go/choreo/services/customer"
	"github.com/choreo-go/choreo/services/kit"
)

func main() {
	kit.Main("customer", nil, func(ctx context.Context, d kit.Deps) error { return customer.New(d).Run(ctx) })
}
