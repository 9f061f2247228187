package gateway

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidOption is returned by Run when an option's value is out of
// range.
var ErrInvalidOption = errors.New("invalid option")

// Option configures the gateway; New takes any number.
type Option func(*options) error

type options struct {
	hosts         map[string]bool // allowed Host names (any port) and host:port pairs
	timeouts      Timeouts
	maxWebsockets int
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
	return options{hosts: map[string]bool{}, maxWebsockets: DefaultMaxWebsockets,
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

// securityHeaders go on every answer. The UI loads its script and style
// from files of its own origin and opens its websocket there: CSP Level 3
// lets 'self' in connect-src match ws: and wss: on the page's host and
// port. Nothing may frame the UI, sniff a type or carry a referrer away.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	"X-Content-Type-Options":       "nosniff",
	"X-Frame-Options":              "DENY",
	"Referrer-Policy":              "no-referrer",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
}

// front is the front door every request passes before the routes:
//
//   - Host must be a name the gateway answers to (checkHost), or the
//     request is refused with 421: DNS rebinding.
//   - A state-changing request (any method but GET, HEAD and OPTIONS) and
//     the websocket upgrade must come from the gateway's own pages
//     (checkOrigin), or 403: cross-site request forgery and cross-site
//     websocket hijacking.
//   - A state-changing request's body must be declared application/json,
//     or 415. A browser sends that type cross-site only after a CORS
//     preflight, which the gateway never grants, so together with the
//     Origin check a form on another site cannot post here, even from an
//     old browser that sends no Origin.
func (s *Service) front(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		// A probe may name the machine by any name; /healthz says nothing
		// a page on another site could use.
		if !(r.Method == http.MethodGet && r.URL.Path == "/healthz") && !s.checkHost(r.Host) {
			writeError(w, http.StatusMisdirectedRequest, fmt.Sprintf("host %q is not served here: browse to localhost or an IP address, or start the gateway with --allowed-hosts", r.Host))
			return
		}
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
		if !safe || r.URL.Path == "/ws" {
			if msg := checkOrigin(r); msg != "" {
				writeError(w, http.StatusForbidden, msg)
				return
			}
		}
		if !safe {
			mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if cs, ok := params["charset"]; err != nil || mt != "application/json" || ok && !strings.EqualFold(cs, "utf-8") {
				writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// checkHost says whether the gateway answers to the Host header. DNS
// rebinding needs a name the attacker controls that resolves to the
// gateway: the browser then takes the gateway for the attacker's origin.
// So what matters is the name, not the port: an IP address (a browser
// that typed an IP address has that address as its origin), localhost,
// and the names given to AllowHosts are served; any other name is not.
func (s *Service) checkHost(host string) bool {
	host = strings.ToLower(host)
	if s.opts.hosts[host] {
		return true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	return name == "localhost" || s.opts.hosts[name]
}

// checkOrigin says why a request does not come from the gateway's own
// pages, or "" if it may. A browser names the page that sent a request in
// Origin (always for a cross-origin POST and for a websocket) and, when
// recent, in Sec-Fetch-Site. Origin must then be this host: the same
// origin, since the gateway serves no other. A request without either
// comes from no browser page (curl, a service) and may pass; front still
// wants JSON for a state change.
func checkOrigin(r *http.Request) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return "cross-site request refused (Sec-Fetch-Site: " + site + ")"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return fmt.Sprintf("cross-origin request refused: Origin %q is not %q", origin, r.Host)
	}
	return ""
}
