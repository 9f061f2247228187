package gateway

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Option configures the gateway; New takes any number.
type Option func(*options) error

type options struct {
	hosts         map[string]bool // allowed Host names (any port) and host:port pairs
	timeouts      Timeouts
	maxWebsockets int
	tokenKey      []byte        // signs customer tokens; random per process when not given
	tokenKeySet   bool          // tokenKey was given (else tokens end with the process)
	tokenTTL      time.Duration // how long a customer token is good for
	operatorToken string        // reads every customer's data; "" for none
	consoleURL    string        // the operator console's address, ending in "/"; "" for none
}

// Timeouts bound how long the gateway waits on a client. A zero field
// takes its default.
type Timeouts struct {
	ReadHeader time.Duration // the request line and headers; default 5s
	Read       time.Duration // the whole request, body included; default 15s
	Write      time.Duration // from the end of the headers to the end of the answer; default 30s
	Idle       time.Duration // a kept-alive connection between requests; default 60s
	// Place bounds one request to the order service to place an order;
	// one unanswered by then is asked again with its idempotency key (its
	// reply may be lost), within 20 s in all; default 8s.
	Place time.Duration
}

// DefaultMaxWebsockets is how many browsers may follow the shop live at
// once unless MaxWebsockets says otherwise.
const DefaultMaxWebsockets = 256

func defaultOptions() options {
	return options{hosts: map[string]bool{}, maxWebsockets: DefaultMaxWebsockets, tokenKey: newTokenKey(), tokenTTL: DefaultTokenTTL,
		timeouts: Timeouts{ReadHeader: 5 * time.Second, Read: 15 * time.Second, Write: 30 * time.Second, Idle: 60 * time.Second, Place: 8 * time.Second}}
}

// AllowHosts adds the names the gateway answers to besides localhost and
// IP addresses: what browsers type in front of the path, such as
// "shop.example.com" (any port) or "shop.example.com:8443" (that port
// only). See checkHost.
func AllowHosts(hosts ...string) Option {
	return func(o *options) error {
		for _, h := range hosts {
			h = strings.ToLower(strings.TrimSpace(h))
			if h == "" {
				continue
			}
			name := h
			if hn, port, err := net.SplitHostPort(h); err == nil {
				if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
					return fmt.Errorf("%w: allowed host %q: bad port", ErrInvalidOption, h)
				}
				name = hn
			}
			if name == "" || strings.ContainsAny(name, "/@?#:[] \t") {
				return fmt.Errorf("%w: allowed host %q: want a name or name:port", ErrInvalidOption, h)
			}
			o.hosts[h] = true
		}
		return nil
	}
}

// WithTimeouts sets the HTTP server's timeouts; a zero field keeps its
// default.
func WithTimeouts(t Timeouts) Option {
	return func(o *options) error {
		if t.ReadHeader < 0 || t.Read < 0 || t.Write < 0 || t.Idle < 0 || t.Place < 0 {
			return fmt.Errorf("%w: negative timeout %+v", ErrInvalidOption, t)
		}
		def := &o.timeouts
		for _, f := range []struct {
			dst *time.Duration
			v   time.Duration
		}{
			{&def.ReadHeader, t.ReadHeader}, {&def.Read, t.Read}, {&def.Write, t.Write}, {&def.Idle, t.Idle}, {&def.Place, t.Place}} {
			if f.v > 0 {
				*f.dst = f.v
			}
		}
		return nil
	}
}

// MaxWebsockets caps the live websocket connections; one more is refused
// with 503 before the upgrade. The default is DefaultMaxWebsockets.
func MaxWebsockets(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: max websockets %d: want at least 1", ErrInvalidOption, n)
		}
		o.maxWebsockets = n
		return nil
	}
}

// MinTokenKey is the shortest key WithCustomerTokens takes, in bytes.
const MinTokenKey = 32

// WithCustomerTokens sets the key that signs the tokens customers get at
// registration, and how long a token is good for (0: DefaultTokenTTL).
// Gateways that share the key accept each other's tokens, and tokens
// outlive a restart; changing the key ends every token. Without this
// option the key is random per process: tokens end with it.
func WithCustomerTokens(key []byte, ttl time.Duration) Option {
	return func(o *options) error {
		if len(key) < MinTokenKey {
			return fmt.Errorf("%w: customer token key of %d bytes: want at least %d", ErrInvalidOption, len(key), MinTokenKey)
		}
		if ttl < 0 {
			return fmt.Errorf("%w: negative token lifetime %s", ErrInvalidOption, ttl)
		}
		o.tokenKey, o.tokenKeySet = append([]byte(nil), key...), true
		if ttl > 0 {
			o.tokenTTL = ttl
		}
		return nil
	}
}

// MinOperatorToken is the shortest token WithOperatorToken takes.
const MinOperatorToken = 16

// WithOperatorToken sets the operator's token (the shop gives the
// console's): a request that brings it (Authorization: Bearer <token>)
// may list every customer and every order. Without it nobody may.
func WithOperatorToken(token string) Option {
	return func(o *options) error {
		if len(token) < MinOperatorToken {
			return fmt.Errorf("%w: operator token of %d characters: want at least %d", ErrInvalidOption, len(token), MinOperatorToken)
		}
		o.operatorToken = token
		return nil
	}
}

// WithConsoleURL gives the operator console's address (saga/console:
// "http://127.0.0.1:8081/"), so that the shop's page links each order to
// its saga's page there (SagaView.Console: its waterfall and log). The
// address only, without the console's token (the operator's browser holds
// it, once it opened the console): a URL with a query or a fragment is
// refused. The console answers only its operator; a customer who follows
// the link sees nothing.
func WithConsoleURL(console string) Option {
	return func(o *options) error {
		u, err := url.Parse(console)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return fmt.Errorf("%w: console URL %q: want http(s)://host:port/", ErrInvalidOption, console)
		}
		if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(console, "?") || strings.HasSuffix(console, "#") {
			return fmt.Errorf("%w: console URL %q: give its address without a query or fragment (never its token)", ErrInvalidOption, console)
		}
		if !strings.HasSuffix(u.Path, "/") {
			u.Path += "/"
		}
		o.consoleURL = u.String()
		return nil
	}
}
