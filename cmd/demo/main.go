// Command demo runs two sagas on an embedded nats-server and prints their
// timelines: one completes, one fails at its third step and is compensated.
//
//	go run ./cmd/demo [--nats-addr 127.0.0.1:0] [--data-dir DIR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/embedded"
	"github.com/choreo-go/choreo/saga"
)

type (
	Order    struct{ ID, Card, SKU string }
	Payment  struct{ PaymentID string }
	Reserved struct{ ReservationID string }
	Shipment struct{ TrackingID string }
)

var (
	charge  = saga.NewStep[Order, Payment]("charge")
	reserve = saga.NewStep[Payment, Reserved]("reserve")
	ship    = saga.NewStep[Reserved, Shipment]("ship", saga.Pivot())
	flow    = saga.MustDefine[Order]("demo-order", 1, charge, reserve, ship, saga.Deadline(time.Minute))
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("nats-addr", "127.0.0.1:0", "where the embedded nats-server listens (host:port; port 0 = any free port)")
	dataDir := flag.String("data-dir", "", "JetStream store directory (default: a temporary one, removed at exit)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", flag.Arg(0))
	}
	dir := *dataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "choreo-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	srv, err := embedded.Start(embedded.Config{Addr: *addr, DataDir: dir, SyncAlways: true})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	fmt.Printf("nats-server listening on %s (store %s)\n", srv.ClientURL(), dir)

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c, err := saga.New(ctx, js, saga.WithSource("choreo-demo"))
	if err != nil {
		return err
	}
	r, err := saga.NewRunner(c)
	if err != nil {
		return err
	}
	err = errors.Join(
		saga.Handle(r, charge, func(ctx context.Context, o Order) (Payment, error) {
			return Payment{PaymentID: "pay-" + o.ID}, nil
		}, func(ctx context.Context, o Order, p Payment) error {
			fmt.Printf("  refund %s for order %s\n", p.PaymentID, o.ID)
			return nil
		}),
		saga.Handle(r, reserve, func(ctx context.Context, p Payment) (Reserved, error) {
			o, err := saga.InputOf[Order](ctx)
			if err != nil {
				return Reserved{}, err
			}
			if o.SKU == "sku-sold-out" {
				return Reserved{}, saga.Abortf("%s is sold out", o.SKU)
			}
			return Reserved{ReservationID: "res-" + o.ID}, nil
		}, func(ctx context.Context, p Payment, res Reserved) error {
			fmt.Printf("  release %s\n", res.ReservationID)
			return nil
		}),
		saga.Handle(r, ship, func(ctx context.Context, res Reserved) (Shipment, error) {
			return Shipment{TrackingID: "trk-" + res.ReservationID}, nil
		}, nil),
	)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-r.Ready():
	case err := <-done:
		return err
	}

	run := time.Now().Format("150405")
	orders := []Order{
		{ID: "ok-" + run, Card: "4242424242424242", SKU: "sku-mug"},
		{ID: "soldout-" + run, Card: "4242424242424242", SKU: "sku-sold-out"},
	}
	for _, o := range orders {
		if err := saga.Start(ctx, c, flow, o.ID, o); err != nil {
			return err
		}
	}
	for _, o := range orders {
		st, err := await(ctx, c, o.ID)
		if err != nil {
			return err
		}
		evs, err := c.Timeline(ctx, flow, o.ID)
		if err != nil {
			return err
		}
		fmt.Printf("\nsaga %s: %s", o.ID, st.Status)
		if st.Reason != "" {
			fmt.Printf(" (%s)", st.Reason)
		}
		fmt.Println()
		for _, e := range evs {
			fmt.Printf("  %8.2fms  %-22s %s\n", float64(e.Time.Sub(evs[0].Time).Microseconds())/1000, e.String(), strings.TrimSpace(string(e.Data)))
		}
	}
	return nil
}

func await(ctx context.Context, c *saga.Client, id string) (*saga.State, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		st, err := c.Get(ctx, flow, id)
		if err == nil && st.Status.Terminal() {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("saga %s did not finish: %v", id, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
