// Command carrier runs the shop's simulated parcel carrier alone against a
// nats-server: it answers shipping's pickup requests with ParcelDelivered
// after CHOREO_CARRIER_DELAY (default 3s).
//
//	go run ./services/cmd/carrier --nats nats://127.0.0.1:4222
package main

import (
	"context"

	"github.com/choreo-go/choreo/services/carrier"
	"github.com/choreo-go/choreo/services/kit"
)

func main() {
	kit.Main("carrier", nil, func(ctx context.Context, d kit.Deps) error { return carrier.New(d).Run(ctx) })
}
