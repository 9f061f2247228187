package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/gateway"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/shop"
)

// The operator's token and the customer tokens' key of startShop's shop.
var (
	testOperator = "operator-token-of-the-test-0123"
	testTokenKey = []byte("the-customer-token-key-of-the-test-0123456789")
)

// startShop runs the shop with the gateway's options opts (after the
// test's tokens) until the test ends, and returns the gateway's address.
func startShop(t *testing.T, opts ...gateway.Option) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	dir := t.TempDir() // before the cleanup below, so removed after the shop stops
	go func() {
		// The operator's token is the test's, and the customer tokens'
		// key (tests forge tokens with it).
		opts := append([]gateway.Option{gateway.WithOperatorToken(testOperator), gateway.WithCustomerTokens(testTokenKey, 0)}, opts...)
		done <- shop.Run(ctx, shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: dir, Gateway: opts},
			func(s *shop.Shop) { ready <- s.HTTPAddr })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shop: %v", err)
		}
	})
	select {
	case addr := <-ready:
		sagatest.Poll(t, 30*time.Second, func() bool {
			code, _, _ := send(t, "GET", "http://"+addr+"/healthz", nil, nil)
			return code == 200
		}, func() string { return "the gateway is not healthy" })
		return addr
	case err := <-done:
		t.Fatalf("shop: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the shop did not start")
	}
	return ""
}

// send makes one request; header may set Host. It returns the status,
// the decoded JSON answer and the response headers.
func send(t *testing.T, method, url string, header map[string]string, body []byte) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}

func customerJSON(name string) []byte {
	b, _ := json.Marshal(map[string]any{"name": name, "email": "ada@example.com",
		"address": map[string]string{"line1": "1 Main St", "city": "Paris", "postcode": "75001", "country": "FR"}})
	return b
}

const jsonType = "application/json"

func TestFrontDoorRefusesCrossSiteRequestsAndForeignHosts(t *testing.T) {
	addr := startShop(t, gateway.AllowHosts("shop.example.com"))
	_, port, _ := net.SplitHostPort(addr)
	base := "http://" + addr
	form := []byte("name=Eve&email=eve%40example.com")
	for _, tc := range []struct {
		name, method, path string
		header             map[string]string
		body               []byte
		code               int
		want               string
	}{
		{"cross-site form post", "POST", "/api/customers", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}, form, 403, "cross-origin"},
		{"cross-site JSON post", "POST", "/api/customers", map[string]string{"Content-Type": jsonType, "Origin": "http://evil.example"}, customerJSON("Eve"), 403, "cross-origin"},
		{"post from a sandboxed frame", "POST", "/api/orders", map[string]string{"Content-Type": jsonType, "Origin": "null"}, []byte(`{}`), 403, "cross-origin"},
		{"another port of the same host", "POST", "/api/customers", map[string]string{"Content-Type": jsonType, "Origin": "http://127.0.0.1:1"}, customerJSON("Eve"), 403, "cross-origin"},
		{"Sec-Fetch-Site cross-site", "POST", "/api/customers", map[string]string{"Content-Type": jsonType, "Sec-Fetch-Site": "cross-site"}, customerJSON("Eve"), 403, "cross-site"},
		{"form post without Origin", "POST", "/api/customers", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, form, 415, "application/json"},
		{"JSON as text/plain", "POST", "/api/customers", map[string]string{"Content-Type": "text/plain"}, customerJSON("Eve"), 415, "application/json"},
		{"no content type", "POST", "/api/orders", nil, []byte(`{}`), 415, "application/json"},
		{"JSON in another charset", "POST", "/api/customers", map[string]string{"Content-Type": "application/json; charset=latin1"}, customerJSON("Eve"), 415, "application/json"},
		{"DNS rebinding", "GET", "/api/customers", map[string]string{"Host": "evil.example:" + port}, nil, 421, "not served here"},
		{"DNS rebinding without a port", "GET", "/", map[string]string{"Host": "evil.example"}, nil, 421, "not served here"},
		{"DNS rebinding post", "POST", "/api/customers", map[string]string{"Host": "evil.example:" + port, "Content-Type": jsonType}, customerJSON("Eve"), 421, "not served here"},
		{"a look-alike of localhost", "GET", "/api/stats", map[string]string{"Host": "localhost.evil.example:" + port}, nil, 421, "not served here"},
		{"too big a body", "POST", "/api/customers", map[string]string{"Content-Type": jsonType}, bytes.Repeat([]byte(" "), 65<<10), 413, "64 KiB"},
		{"invalid UTF-8", "POST", "/api/customers", map[string]string{"Content-Type": jsonType}, []byte("{\"name\":\"Eve\xff\"}"), 400, "UTF-8"},
		// What the gateway's own page and curl send passes.
		{"same-origin JSON post", "POST", "/api/customers", map[string]string{"Content-Type": jsonType, "Origin": base, "Sec-Fetch-Site": "same-origin"}, customerJSON("Ada"), 201, ""},
		{"JSON post without Origin (curl)", "POST", "/api/customers", map[string]string{"Content-Type": "application/json; charset=utf-8"}, customerJSON("Ada"), 201, ""},
		{"localhost", "GET", "/api/stats", map[string]string{"Host": "localhost:" + port}, nil, 200, ""},
		{"IPv6 loopback", "GET", "/api/stats", map[string]string{"Host": "[::1]:" + port}, nil, 200, ""},
		{"an allowed host", "POST", "/api/customers", map[string]string{"Host": "shop.example.com", "Origin": "https://shop.example.com", "Content-Type": jsonType}, customerJSON("Ada"), 201, ""},
		{"a probe by any name", "GET", "/healthz", map[string]string{"Host": "gateway.internal:" + port}, nil, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, res, _ := send(t, tc.method, base+tc.path, tc.header, tc.body)
			msg, _ := res["error"].(string)
			if code != tc.code || !strings.Contains(msg, tc.want) {
				t.Errorf("%s %s = %d %v, want %d with %q", tc.method, tc.path, code, res, tc.code, tc.want)
			}
		})
	}
	t.Run("cross-site websocket", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://evil.example"}}})
		if err == nil {
			c.CloseNow()
			t.Fatal("a websocket from another site was accepted")
		}
		if resp == nil || resp.StatusCode != 403 {
			t.Errorf("cross-site websocket: %v %v, want 403", resp, err)
		}
		c, _, err = websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://" + addr}}})
		if err != nil {
			t.Fatalf("same-origin websocket: %v", err)
		}
		c.CloseNow()
	})
}

func TestSecurityHeadersOnTheUIAndTheAPI(t *testing.T) {
	base := "http://" + startShop(t)
	want := map[string]string{
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
		"Referrer-Policy":        "no-referrer",
	}
	for _, path := range []string{"/", "/app.js", "/style.css", "/api/stats", "/api/orders", "/api/nope", "/healthz"} {
		_, _, h := send(t, "GET", base+path, nil, nil)
		for k, v := range want {
			if h.Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", path, k, h.Get(k), v)
			}
		}
		csp := h.Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'self'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, d)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP %q allows inline code", path, csp)
		}
	}
}

// trickle writes b one byte at a time, every interval, until it is all
// written or the connection fails; the caller waits on the returned
// channel.
func trickle(conn net.Conn, b []byte, interval time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range b {
			if _, err := conn.Write(b[i : i+1]); err != nil {
				return
			}
			time.Sleep(interval)
		}
	}()
	return done
}

func TestSlowClientsAreCutOff(t *testing.T) {
	const timeout = time.Second
	addr := startShop(t, gateway.WithTimeouts(gateway.Timeouts{ReadHeader: timeout, Read: timeout}))
	// Sent a byte every 100ms, each would take minutes.
	body := customerJSON(strings.Repeat("a", 190))
	for _, tc := range []struct {
		name, head string
		slow       []byte
		want       string // the status line, or "" for a close without an answer
	}{
		{"slow body", fmt.Sprintf("POST /api/customers HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, len(body)), body, "408"},
		{"slow headers", "GET /api/stats HTTP/1.1\r\n", []byte(strings.Repeat("X-Slow: loris\r\n", 100)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(conn, tc.head); err != nil {
				t.Fatal(err)
			}
			wrote := trickle(conn, tc.slow, 100*time.Millisecond)
			start := time.Now()
			// Ours gives up after 30s; the server must have long before.
			_ = conn.SetReadDeadline(start.Add(30 * time.Second))
			line, err := bufio.NewReader(conn).ReadString('\n')
			elapsed := time.Since(start)
			conn.Close()
			<-wrote
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server still waited after %v", elapsed)
			}
			if tc.want != "" && !strings.Contains(line, " "+tc.want+" ") {
				t.Errorf("answer %q (%v), want %s", line, err, tc.want)
			}
			if elapsed > 10*time.Second {
				t.Errorf("cut off after %v, want about %v", elapsed, timeout)
			}
		})
	}
}

func TestWebsocketsAreCapped(t *testing.T) {
	addr := startShop(t, gateway.MaxWebsockets(2))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func() (*websocket.Conn, *http.Response, error) {
		return websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
	}
	var open []*websocket.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			c.CloseNow()
		}
	})
	for range 2 {
		c, _, err := dial()
		if err != nil {
			t.Fatalf("websocket within the cap: %v", err)
		}
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
	}
	c, resp, err := dial()
	if err == nil {
		c.CloseNow()
		t.Fatal("a third websocket was accepted over a cap of 2")
	}
	if resp == nil || resp.StatusCode != 503 {
		t.Fatalf("third websocket: %v %v, want 503", resp, err)
	}
	// A browser that leaves makes room.
	open[0].Close(websocket.StatusNormalClosure, "bye")
	sagatest.Poll(t, 20*time.Second, func() bool {
		c, _, err := dial()
		if err != nil {
			return false
		}
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
		return true
	}, func() string { return "no room after a websocket closed" })
	// The API still answers while the websockets are full.
	if code, _, _ := send(t, "GET", "http://"+addr+"/api/stats", nil, nil); code != 200 {
		t.Errorf("GET /api/stats with the websockets full: %d", code)
	}
}

func TestControlCharactersInARegistrationAre400(t *testing.T) {
	base := "http://" + startShop(t)
	good := func() map[string]any {
		return map[string]any{"name": "Ada", "email": "ada@example.com",
			"address": map[string]any{"line1": "1 Main St", "city": "Paris", "postcode": "75001", "country": "FR"}}
	}
	fields := map[string]func(m map[string]any, v string){
		"name":             func(m map[string]any, v string) { m["name"] = v },
		"email":            func(m map[string]any, v string) { m["email"] = v },
		"address.line1":    func(m map[string]any, v string) { m["address"].(map[string]any)["line1"] = v },
		"address.city":     func(m map[string]any, v string) { m["address"].(map[string]any)["city"] = v },
		"address.postcode": func(m map[string]any, v string) { m["address"].(map[string]any)["postcode"] = v },
		"address.country":  func(m map[string]any, v string) { m["address"].(map[string]any)["country"] = v },
	}
	payloads := map[string]string{"CRLF Bcc": "Eve\r\nBcc: victim@example.com", "NUL": "a\x00b", "ESC": "a\x1b[2Jb",
		"TAB": "a\tb", "C1": "a\u0085b", "DEL": "a\x7fb"}
	for field, set := range fields {
		for what, v := range payloads {
			m := good()
			set(m, v)
			b, _ := json.Marshal(m)
			code, res, _ := send(t, "POST", base+"/api/customers", map[string]string{"Content-Type": jsonType}, b)
			if msg, _ := res["error"].(string); code != 400 || !strings.Contains(msg, field+":") {
				t.Errorf("%s with %s: %d %v, want 400 naming %s", field, what, code, res, field)
			}
		}
	}
	code, res, _ := send(t, "GET", base+"/api/customers", map[string]string{"Authorization": "Bearer " + testOperator}, nil)
	if n := len(res["customers"].([]any)); code != 200 || n != 0 {
		t.Errorf("%d customers registered, want none", n)
	}
}

func TestBadOptionsStopRun(t *testing.T) {
	for name, opt := range map[string]gateway.Option{
		"no websockets":                 gateway.MaxWebsockets(0),
		"a host with a path":            gateway.AllowHosts("shop.example.com/x"),
		"a URL for a host":              gateway.AllowHosts("https://shop.example.com"),
		"a bad port":                    gateway.AllowHosts("shop.example.com:99999"),
		"a negative timeout":            gateway.WithTimeouts(gateway.Timeouts{Read: -time.Second}),
		"a space in the name":           gateway.AllowHosts("shop example.com"),
		"a short token key":             gateway.WithCustomerTokens([]byte("short"), 0),
		"a negative token ttl":          gateway.WithCustomerTokens(make([]byte, 32), -time.Second),
		"a short operator token":        gateway.WithOperatorToken("short"),
		"a console URL with its token":  gateway.WithConsoleURL("http://127.0.0.1:8081/?token=abc"),
		"a console URL with a fragment": gateway.WithConsoleURL("http://127.0.0.1:8081/#flows"),
		"a console URL of no scheme":    gateway.WithConsoleURL("127.0.0.1:8081"),
		"a console URL of javascript":   gateway.WithConsoleURL("javascript:alert(1)"),
	} {
		err := gateway.New(kit.Deps{}, "127.0.0.1:0", opt).Run(context.Background())
		if !errors.Is(err, gateway.ErrInvalidOption) {
			t.Errorf("%s: Run = %v, want ErrInvalidOption", name, err)
		}
	}
}
