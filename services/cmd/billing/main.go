// Command billing runs the shop's billing service alone against a nats-server.
//
//	go run ./services/cmd/billing --nats nats://127.0.0.1:4222
package main

import (
	"context"

	"github.com/choreo-go/choreo/services/billing"
	"github.com/choreo-go/choreo/services/kit"
)

func main() {
	kit.Main("billing", nil, func(ctx context.Context, d kit.Deps) error { return billing.New(d).Run(ctx) })
}
