package gateway

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/choreo-go/choreo/internal/httpjson"
)

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
			httpjson.Error(w, http.StatusMisdirectedRequest, fmt.Sprintf("host %q is not served here: browse to localhost or an IP address, or start the gateway with --allowed-hosts", r.Host))
			return
		}
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
		if !safe || r.URL.Path == "/ws" {
			if msg := checkOrigin(r); msg != "" {
				httpjson.Error(w, http.StatusForbidden, msg)
				return
			}
		}
		if !safe {
			mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if cs, ok := params["charset"]; err != nil || mt != "application/json" || ok && !strings.EqualFold(cs, "utf-8") {
				httpjson.Error(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
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
