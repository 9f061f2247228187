// Command notification runs the shop's notification service alone against
// a nats-server.
//
//	go run ./services/cmd/notification --nats nats://127.0.0.1:4222 --mail-dir ./mail
package main

import (
	"context"
	"flag"

	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/notification"
)

func main() {
	var dir string
	kit.Main("notification", func(fs *flag.FlagSet) {
		fs.StringVar(&dir, "mail-dir", "./mail", "where e-mails are written as .eml files")
	}, func(ctx context.Context, d kit.Deps) error { return notification.New(d, dir).Run(ctx) })
}
