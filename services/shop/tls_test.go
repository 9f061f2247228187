package shop_test

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/internal/embedded"
	"github.com/choreo-go/choreo/internal/testcert"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// The shop's embedded server with TLS and client certificates: the shop
// works (its services connect in-process), a service with the CA and a
// certificate connects from outside (kit.ClientTLS, what --tls-* build),
// and a client without either is refused.
func TestShopServesTLS(t *testing.T) {
	certs := testcert.New(t)
	cfg := shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		TLS: embedded.TLSFiles{Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA}}
	sh := shoptest.RunShop(t, cfg)
	if !strings.HasPrefix(sh.NATSURL, "tls://") {
		t.Errorf("NATS URL %s, want tls://", sh.NATSURL)
	}
	shoptest.AwaitHealth(t, sh.Base, 200, "")
	cust := shoptest.Register(t, sh.Base, "ada", "FR")
	code, res := placeMug(t, sh, cust)
	if code != 202 {
		t.Fatalf("order: %d %v", code, res)
	}
	shoptest.AwaitStatus(t, sh.Base, cust, res["id"].(string), "confirmed")

	conf, err := kit.ClientTLS(certs.CA, certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(sh.NATSURL, nats.Secure(conf), shoptest.Seed(t, sh.Credentials, shop.Admin))
	if err != nil {
		t.Fatalf("a client with the CA and a certificate: %v", err)
	}
	if _, err := kit.NewDeps(context.Background(), nc, "outsider", nil); err != nil {
		t.Errorf("deps over TLS: %v", err)
	}
	nc.Close()
	plain := "nats://" + strings.TrimPrefix(sh.NATSURL, "tls://")
	noCert, _ := kit.ClientTLS(certs.CA, "", "")
	other := testcert.New(t)
	otherCert, _ := kit.ClientTLS(certs.CA, other.ClientCert, other.ClientKey)
	for name, opts := range map[string][]nats.Option{
		"no TLS configuration":        nil,
		"the CA but no certificate":   {nats.Secure(noCert)},
		"a certificate of another CA": {nats.Secure(otherCert)},
	} {
		if nc, err := nats.Connect(plain, opts...); err == nil {
			nc.Close()
			t.Errorf("a client with %s connected", name)
		}
	}
}

// Bad TLS files stop the shop before it starts, with a one-line error.
func TestShopBadTLSFilesStopStartup(t *testing.T) {
	certs := testcert.New(t)
	for _, tc := range []struct {
		name string
		tls  embedded.TLSFiles
		want string
	}{
		{"key missing", embedded.TLSFiles{Cert: certs.ServerCert}, "a certificate and its key are both required"},
		{"unreadable cert", embedded.TLSFiles{Cert: "/nonexistent.pem", Key: certs.ServerKey}, "/nonexistent.pem"},
		{"mismatched key", embedded.TLSFiles{Cert: certs.ServerCert, Key: certs.ClientKey}, "private key does not match"},
		{"unreadable CA", embedded.TLSFiles{Cert: certs.ServerCert, Key: certs.ServerKey, CA: "/nonexistent-ca.pem"}, "/nonexistent-ca.pem"},
		{"CA alone", embedded.TLSFiles{CA: certs.CA}, "both required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), TLS: tc.tls}
			err := shop.Run(context.Background(), cfg, func(*shop.Shop) { t.Error("the shop started") })
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Run = %v, want one line about %q", err, tc.want)
			}
		})
	}
}
