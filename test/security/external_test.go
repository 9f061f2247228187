package security_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/shop"
)

// The attacks run against a shop deployed elsewhere (the compose stack of
// test/compose) instead of one of their own, when CHOREO_SECURITY_NATS
// names its servers:
//
//	CHOREO_SECURITY_NATS         the servers' URLs, comma-separated
//	CHOREO_SECURITY_HTTP         the gateway, host:port
//	CHOREO_SECURITY_CREDENTIALS  the directory of the identities' <name>.nk seeds
//	CHOREO_SECURITY_TLS_CA, _CERT, _KEY  the TLS files a client needs
//	CHOREO_SECURITY_OPERATOR_TOKEN  the gateway's operator token, if it has one
//
// Only the tests that use theShop take it; the others start shops of
// their own.
var tlsOpts []nats.Option

// external connects to the shop the environment names, as the admin, or
// returns nil when it names none.
func external() (*running, error) {
	url := os.Getenv("CHOREO_SECURITY_NATS")
	if url == "" {
		return nil, nil
	}
	conf, err := kit.ClientTLS(os.Getenv("CHOREO_SECURITY_TLS_CA"), os.Getenv("CHOREO_SECURITY_TLS_CERT"), os.Getenv("CHOREO_SECURITY_TLS_KEY"))
	if err != nil {
		return nil, err
	}
	if conf != nil {
		tlsOpts = []nats.Option{nats.Secure(conf)}
	}
	creds := os.Getenv("CHOREO_SECURITY_CREDENTIALS")
	seed, err := nats.NkeyOptionFromSeed(filepath.Join(creds, shop.Admin+".nk"))
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, append([]nats.Option{seed, nats.CustomInboxPrefix(access.InboxPrefix(shop.Admin)), nats.MaxReconnects(-1)}, tlsOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s as the admin: %w", url, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys, err := kit.KeyOptions(os.Getenv("CHOREO_KEY_FILE")) // a stack that encrypts
	if err != nil {
		nc.Close()
		return nil, err
	}
	d, err := kit.NewDeps(ctx, nc, shop.Admin, nil, keys...)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s := &shop.Shop{HTTPAddr: os.Getenv("CHOREO_SECURITY_HTTP"), NATSURL: url, Deps: d, Credentials: creds,
		OperatorToken: os.Getenv("CHOREO_SECURITY_OPERATOR_TOKEN")}
	return &running{Shop: s, stop: nc.Close, refused: &refusals{}}, nil
}
