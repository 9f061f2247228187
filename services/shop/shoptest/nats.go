package shoptest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// Seed is the option that connects as the identity name, whose nkey seed
// is the file <credentials>/<name>.nk as the shop writes it (shop.Admin
// for the admin).
func Seed(t testing.TB, credentials, name string) nats.Option {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(filepath.Join(credentials, name+".nk"))
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

// Connect connects to url with opts until the test ends, and returns the
// connection and its JetStream.
func Connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// ConnectAs connects to url as the identity name (its seed in
// credentials, the inbox prefix that identity may use) until the test
// ends. errs, when not nil, gets the errors the server reports apart
// from a request (a permissions violation); those that do not fit are
// dropped.
func ConnectAs(t testing.TB, url, credentials, name string, errs chan<- error, opts ...nats.Option) *nats.Conn {
	t.Helper()
	all := []nats.Option{Seed(t, credentials, name), nats.CustomInboxPrefix(access.InboxPrefix(name))}
	if errs != nil {
		all = append(all, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	}
	nc, err := nats.Connect(url, append(all, opts...)...)
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// AwaitJetStream waits (up to timeout) until a client of url, with opts,
// gets an answer to a JetStream request: a cluster has elected its meta
// leader.
func AwaitJetStream(t testing.TB, url string, timeout time.Duration, opts ...nats.Option) {
	t.Helper()
	var last error
	sagatest.Poll(t, timeout, func() bool {
		nc, err := nats.Connect(url, opts...)
		if last = err; err != nil {
			return false
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if last = err; err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, last = js.AccountInfo(ctx)
		return last == nil
	}, func() string { return fmt.Sprintf("no JetStream meta leader at %s: %v", url, last) })
}
