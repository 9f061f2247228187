package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// The printed block, pasted into a server's configuration, loads in
// nats-server and works: no anonymous access, the admin provisions, a
// service runs its steps on its own identity and is refused another's.
func TestConfigLoadsAndWorks(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	var out bytes.Buffer
	if err := run(&out, creds); err != nil {
		t.Fatal(err)
	}
	// A second run reuses the seeds: the same block.
	var again bytes.Buffer
	if err := run(&again, creds); err != nil || again.String() != out.String() {
		t.Fatalf("a second run printed another block (%v)", err)
	}
	conf := filepath.Join(dir, "nats.conf")
	cfg := fmt.Sprintf("listen: \"127.0.0.1:-1\"\njetstream {\n  store_dir: %q\n}\n%s", filepath.Join(dir, "js"), out.String())
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server refuses the config: %v", err)
	}
	opts.NoLog, opts.NoSigs = true, true
	srv := shoptest.StartServer(t, opts, nil)
	url := srv.ClientURL()
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected")
	}
	connect := func(name string, errs chan error) *nats.Conn {
		return shoptest.ConnectAs(t, url, creds, name, errs)
	}
	ctx := context.Background()
	adminErrs, payErrs := make(chan error, 16), make(chan error, 16)
	// Before provisioning, a service cannot create the streams, and says
	// what to do.
	early := connect("payment", make(chan error, 16))
	ectx, ecancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = kit.NewDeps(ectx, early, "payment", nil)
	ecancel()
	if !errors.Is(err, saga.ErrNotProvisioned) || !strings.Contains(err.Error(), "run provisioning") {
		t.Fatalf("payment before provisioning: %v, want ErrNotProvisioned saying to run provisioning", err)
	}
	admin := connect(shop.Admin, adminErrs)
	ad, err := shop.Provision(ctx, admin, nil) // choreo's and the event streams, the buckets
	if err != nil {
		t.Fatal(err)
	}

	pay := connect("payment", payErrs)
	d, err := kit.NewDeps(ctx, pay, "payment", nil)
	if err != nil {
		t.Fatalf("payment cannot start on what the admin provisioned: %v", err)
	}
	svc := shoptest.Go(t, "payment", shop.Service("payment", d, ""))
	sagatest.Poll(t, 20*time.Second, func() bool {
		_, err := ad.JS.Consumer(ctx, "CHOREO", "order_v1_charge_do")
		return err == nil
	}, func() string { return "payment did not create its consumer" })
	if err := svc.Stop(); err != nil {
		t.Fatalf("payment: %v", err)
	}
	select {
	case err := <-payErrs:
		t.Fatalf("payment was refused something it needs: %v", err)
	default:
	}
	js, _ := jetstream.New(pay)
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := js.Publish(pctx, "choreo.log.order.o1.reserve.done", []byte(`{}`)); err == nil {
		t.Fatal("payment appended inventory's outcome")
	}
	select {
	case err := <-payErrs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "reserve.done") {
			t.Fatalf("got %v, want a permissions violation", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no permissions violation")
	}
}
