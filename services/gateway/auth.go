package gateway

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/choreo-go/choreo/internal/httpjson"
	"github.com/choreo-go/choreo/saga"
)

// Who may read and do what over HTTP:
//
//   - a customer, with the token the gateway gave at registration
//     (Authorization: Bearer <token>), reads and acts on that customer's
//     data only: its profile, its orders, placing orders for itself;
//   - the operator, with the operator token (the console's), reads
//     everyone's: every customer, every order;
//   - anyone reads what names no one: the catalog, the counters, the
//     flow, /healthz.
//
// A customer token is "ct1.<customer id>.<expiry, Unix seconds>.<MAC>",
// the MAC an HMAC-SHA256 of the rest under the gateway's token key. The
// gateway stores no token: the client keeps it (the web page in its
// localStorage), and it is good until it expires (DefaultTokenTTL after
// registration) or the key changes. Every gateway that shares the key
// accepts it, so tokens survive a restart and work on any instance.

// DefaultTokenTTL is how long a customer token is good for unless
// WithCustomerTokens says otherwise.
const DefaultTokenTTL = 30 * 24 * time.Hour

const tokenPrefix = "ct1"

// viewer is who a request comes from.
type viewer struct {
	operator bool
	customer string // the customer the token acts for, when not the operator
}

// may reports whether the viewer may see and act on customer's data.
func (v viewer) may(customer string) bool {
	return v.operator || v.customer != "" && v.customer == customer
}

// errBadToken is a token that is malformed, forged or expired.
var errBadToken = errors.New("invalid customer token")

// issueToken makes the token of a customer, and when it expires.
func (s *Service) issueToken(customer string, now time.Time) (string, time.Time) {
	exp := now.Add(s.opts.tokenTTL).Truncate(time.Second)
	body := tokenPrefix + "." + customer + "." + strconv.FormatInt(exp.Unix(), 10)
	return body + "." + s.mac(body), exp
}

func (s *Service) mac(body string) string {
	m := hmac.New(sha256.New, s.opts.tokenKey)
	m.Write([]byte(body))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkToken returns the customer a token acts for.
func (s *Service) checkToken(token string, now time.Time) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 4 || parts[0] != tokenPrefix || !saga.ValidID(parts[1]) {
		return "", fmt.Errorf("%w: malformed", errBadToken)
	}
	body := strings.Join(parts[:3], ".")
	if !hmac.Equal([]byte(parts[3]), []byte(s.mac(body))) {
		return "", fmt.Errorf("%w: not issued by this shop", errBadToken)
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: malformed", errBadToken)
	}
	if at := time.Unix(exp, 0); !now.Before(at) {
		return "", fmt.Errorf("%w: expired at %s", errBadToken, at.UTC().Format(time.RFC3339))
	}
	return parts[1], nil
}

// identify says who brings token: the operator, a customer, or nobody
// (an error that says why).
func (s *Service) identify(token string) (viewer, error) {
	if s.opts.operatorToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.operatorToken)) == 1 {
		return viewer{operator: true}, nil
	}
	id, err := s.checkToken(token, time.Now())
	if err != nil {
		return viewer{}, err
	}
	return viewer{customer: id}, nil
}

// bearer is the token of the request's Authorization header, or "".
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// who authenticates a request, or answers 401 and returns false.
func (s *Service) who(w http.ResponseWriter, r *http.Request) (viewer, bool) {
	token := bearer(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="shop"`)
		httpjson.Error(w, http.StatusUnauthorized, "this needs a token: Authorization: Bearer <the token POST /api/customers answered> (or the operator's token)")
		return viewer{}, false
	}
	v, err := s.identify(token)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="shop", error="invalid_token"`)
		httpjson.Error(w, http.StatusUnauthorized, err.Error()+": register again for a new one (POST /api/customers)")
		return viewer{}, false
	}
	return v, true
}

// operator authenticates a request that only the operator may make, or
// answers 401 or 403 and returns false.
func (s *Service) operator(w http.ResponseWriter, r *http.Request, what string) bool {
	v, ok := s.who(w, r)
	if !ok {
		return false
	}
	if !v.operator {
		httpjson.Error(w, http.StatusForbidden, what+" is the operator's: a customer token reads only its own customer's data")
		return false
	}
	return true
}

// forbidden answers 403: v may not act for customer.
func forbidden(w http.ResponseWriter, v viewer, customer string) {
	httpjson.Error(w, http.StatusForbidden, fmt.Sprintf("this token is customer %s's: it may not read or act for customer %s", v.customer, customer))
}

// newTokenKey is a random key, for a gateway not given one.
func newTokenKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // never fails (crypto/rand)
	return k
}

// TokenKeyFile reads the customer token key kept in path, or writes a new
// random one there (mode 0600) when the file does not exist: for
// WithCustomerTokens, so tokens outlive a restart. Anyone who reads the
// file can make any customer's token: keep it with the credentials.
func TokenKeyFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := newTokenKey()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("customer token key: %w", err)
		}
		if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
			f.Close()
			return nil, fmt.Errorf("customer token key: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("customer token key: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("customer token key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) < MinTokenKey {
		return nil, fmt.Errorf("customer token key %s: want at least %d bytes in hex", path, MinTokenKey)
	}
	return key, nil
}
