package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// connectOptions turns the connection flags into options; the error is a
// one-line reason.
func connectOptions(creds, nkey, user, password, ca, cert, key string) ([]nats.Option, error) {
	var opts []nats.Option
	n := 0
	for _, s := range []string{creds, nkey, user} {
		if s != "" {
			n++
		}
	}
	switch {
	case n > 1:
		return nil, errors.New("give one of --creds, --nkey and --user")
	case creds != "":
		if _, err := os.Stat(creds); err != nil {
			return nil, fmt.Errorf("--creds: %v", err)
		}
		opts = append(opts, nats.UserCredentials(creds))
	case nkey != "":
		opt, err := nats.NkeyOptionFromSeed(nkey)
		if err != nil {
			return nil, fmt.Errorf("--nkey %s: %v", nkey, strings.ReplaceAll(err.Error(), "\n", " "))
		}
		opts = append(opts, opt)
	case user != "":
		if password == "" {
			return nil, errors.New("--user needs --password or NATS_PASSWORD")
		}
		opts = append(opts, nats.UserInfo(user, password))
	}
	if ca == "" && cert == "" && key == "" {
		return opts, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--tlsca: %v", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tlsca %s: no PEM certificate in it", ca)
		}
	}
	if (cert == "") != (key == "") {
		return nil, errors.New("--tlscert and --tlskey go together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--tlscert/--tlskey: %v", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return append(opts, nats.Secure(conf)), nil
}
