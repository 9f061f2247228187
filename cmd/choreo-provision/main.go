// Command choreo-provision creates, as the admin identity, what the shop's
// services use and may not create themselves: choreo's streams, the event
// streams and every service's buckets (shop.Provision). On a cluster each
// has 3 replicas. It exits once they exist, so it can run before the
// services start; running it again changes nothing. A cluster still
// electing its leaders is waited for, up to --wait.
//
//	go run ./cmd/choreo-provision --nats tls://nats-1:4222 --nkey credentials/admin.nk --tls-ca ca.pem
package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/shop"
)

func main() {
	var wait time.Duration
	kit.Main(shop.Admin, func(fs *flag.FlagSet) {
		fs.DurationVar(&wait, "wait", 2*time.Minute, "how long to retry while the cluster is not ready")
	}, func(ctx context.Context, d kit.Deps) error {
		deadline := time.Now().Add(wait)
		for {
			_, err := shop.Provision(ctx, d.NC, d.Logger)
			if err == nil {
				fmt.Println("provisioned the streams and buckets")
				return nil
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return err
			}
			fmt.Println("not yet:", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Second): // the cluster electing leaders
			}
		}
	})
}
