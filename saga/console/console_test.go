package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/console"
	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

type (
	Order    struct{ ID string }
	Charged  struct{ PaymentID string }
	Reserved struct{ Reservation string }
	Done     struct{ OK bool }
)

// fixture is a server with a flow whose sagas complete, one compensated
// saga parked (its refund refused until refundWorks), and a dead letter
// whose payload is markup.
type fixture struct {
	c           *saga.Client
	flow        *saga.Flow[Order]
	refundWorks *atomic.Bool
	deadSeq     uint64
	srv         *httptest.Server
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s := sagatest.NewServer(t)
	c := s.Client()
	fast := saga.RetryPolicy{MaxAttempts: 2, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	charge := saga.NewStep[Order, Charged]("charge", saga.Owner("payment"), saga.Undo("refund"), saga.WithCompensationRetry(fast))
	reserve := saga.NewStep[Charged, Reserved]("reserve", saga.Owner("inventory"), saga.Undo("release"))
	schedule := saga.NewStep[Charged, Reserved]("schedule", saga.Owner("shipping"))
	confirm := saga.NewStep[Order, Done]("confirm", saga.Pivot(), saga.Owner("order"))
	flow := saga.MustDefine[Order]("shop", 1, charge, saga.Parallel(reserve, schedule), confirm)
	f := &fixture{c: c, flow: flow, refundWorks: &atomic.Bool{}}
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	err = errors.Join(
		saga.Handle(r, charge, func(_ context.Context, o Order) (Charged, error) { return Charged{PaymentID: "pay-" + o.ID}, nil },
			func(context.Context, Order, Charged) error {
				if !f.refundWorks.Load() {
					return errors.New("refund api <b>down</b>")
				}
				return nil
			}),
		saga.Handle(r, reserve, func(ctx context.Context, ch Charged) (Reserved, error) {
			if strings.HasPrefix(ch.PaymentID, "pay-stuck") {
				return Reserved{}, saga.Abortf("sold out")
			}
			return Reserved{Reservation: "r"}, nil
		}, func(context.Context, Charged, Reserved) error { return nil }),
		saga.Handle(r, schedule, func(context.Context, Charged) (Reserved, error) { return Reserved{}, nil },
			func(context.Context, Charged, Reserved) error { return nil }),
		saga.Handle(r, confirm, func(context.Context, Order) (Done, error) { return Done{OK: true}, nil }, nil),
	)
	if err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	ctx := context.Background()
	for _, id := range []string{"ok1", "ok2", "stuck"} {
		if err := saga.Start(ctx, c, flow, id, Order{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	sagatest.AwaitStatus(t, c, flow, "ok1", 20*time.Second, saga.StatusCompleted)
	sagatest.AwaitStatus(t, c, flow, "ok2", 20*time.Second, saga.StatusCompleted)
	sagatest.AwaitStatus(t, c, flow, "stuck", 20*time.Second, saga.StatusCompensationFailed)

	// An event with no headers, its payload markup: dead-lettered.
	nc, _ := s.Connect()
	if err := nc.PublishMsg(&nats.Msg{Subject: "choreo.log.shop.evil.v1._saga.start", Data: []byte(`<script>alert("x")</script>`)}); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 20*time.Second, func() bool {
		dls, _ := s.Ops().DeadLetters(ctx, "")
		for _, d := range dls {
			if strings.Contains(d.Subject, ".evil.") {
				f.deadSeq = d.Sequence
				return true
			}
		}
		return false
	}, func() string { return "the markup event was not dead-lettered" })
	f.srv = httptest.NewServer(console.Handler(c, s.Ops(), console.WithTitle(`<i>test</i>`)))
	t.Cleanup(f.srv.Close)
	return f
}

// do sends a request and returns the status and body; action requests
// carry the console's header.
func (f *fixture) do(t *testing.T, method, path string, header map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set(console.ActionHeader, "1")
	}
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	if h, ok := header["Host"]; ok {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (f *fixture) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	code, body, h := f.do(t, http.MethodGet, path, nil)
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %d %s %s", path, code, h.Get("Content-Type"), body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

func TestConsole(t *testing.T) {
	f := newFixture(t)

	t.Run("page", func(t *testing.T) {
		code, body, h := f.do(t, http.MethodGet, "/", nil)
		if code != 200 || !strings.Contains(body, `src="console.js"`) || !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("GET /: %d %v", code, h)
		}
		if strings.Contains(body, "<i>test</i>") || !strings.Contains(body, "&lt;i&gt;test&lt;/i&gt;") {
			t.Errorf("the title is not escaped in the page")
		}
		for _, p := range []string{"/console.js", "/console.css"} {
			if code, _, _ := f.do(t, http.MethodGet, p, nil); code != 200 {
				t.Errorf("GET %s: %d", p, code)
			}
		}
		if code, _, _ := f.do(t, http.MethodGet, "/nothing", nil); code != 404 {
			t.Errorf("GET /nothing: %d", code)
		}
	})

	t.Run("flows and counts", func(t *testing.T) {
		var flows []struct {
			Name    string
			Version int
			Steps   []describe.Step
		}
		f.getJSON(t, "/api/flows", &flows)
		if len(flows) != 1 || flows[0].Name != "shop" || len(flows[0].Steps) != 4 || flows[0].Steps[0].Undo != "refund" {
			t.Fatalf("flows %+v", flows)
		}
		var counts ops.FlowCounts
		f.getJSON(t, "/api/flows/shop/v1/counts", &counts)
		byStep := map[string]ops.StepCount{}
		for _, s := range counts.Steps {
			byStep[s.Step] = s
		}
		if c := byStep["charge"]; c.Completed != 2 || c.Parked != 1 {
			t.Errorf("charge counts %+v", c)
		}
		if c := byStep["reserve"]; c.Failed != 1 || c.Completed != 2 {
			t.Errorf("reserve counts %+v", c)
		}
		if counts.Sagas[saga.StatusCompleted] != 2 || counts.Sagas[saga.StatusCompensationFailed] != 1 {
			t.Errorf("sagas %v", counts.Sagas)
		}
		// The JSON is for scripts: snake_case, like the rest of the API.
		if _, body, _ := f.do(t, http.MethodGet, "/api/flows", nil); !strings.Contains(body, `"event_type":`) || strings.Contains(body, `"Name":`) {
			t.Errorf("flows JSON: %s", body)
		}
		if code, body, _ := f.do(t, http.MethodGet, "/api/flows/nope/v1/counts", nil); code != http.StatusNotFound {
			t.Errorf("counts of a flow nobody registered: %d %s", code, body)
		}
	})

	t.Run("dead letters are escaped and cut", func(t *testing.T) {
		code, body, _ := f.do(t, http.MethodGet, "/api/deadletters", nil)
		if code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		if strings.Contains(body, "<script>") {
			t.Errorf("markup from the broker in the JSON as is: %s", body)
		}
		var d struct {
			Total       int
			DeadLetters []struct {
				Sequence uint64
				Subject  string
				Reason   string
				Preview  string
				Size     int
			} `json:"dead_letters"`
		}
		f.getJSON(t, "/api/deadletters", &d)
		found := false
		for _, l := range d.DeadLetters {
			if l.Sequence == f.deadSeq {
				found = true
				if !strings.Contains(l.Reason, "missing headers") || l.Subject != "choreo.log.shop.evil.v1._saga.start" || l.Preview != `<script>alert("x")</script>` {
					t.Errorf("dead letter %+v", l)
				}
			}
		}
		if !found || d.Total < 1 {
			t.Errorf("the dead letter %d is not listed: %+v", f.deadSeq, d)
		}
	})

	t.Run("replay", func(t *testing.T) {
		code, body, _ := f.do(t, http.MethodPost, fmt.Sprintf("/api/deadletters/%d/replay", f.deadSeq), nil)
		if code != http.StatusConflict || !strings.Contains(body, "saga log event") {
			t.Errorf("replay of a log event: %d %s", code, body)
		}
		for path, want := range map[string]int{
			"/api/deadletters/abc/replay":      400,
			"/api/deadletters/0/replay":        400,
			"/api/deadletters/999999/replay":   404,
			"/api/deadletters/-1/replay":       400,
			"/api/deadletters/1e3/replay":      400,
			"/api/flows/shop/1/counts":         405, // GET only; a POST is refused before
			"/api/sagas/shop/ok1":              405,
			"/api/sagas/shop/ok1/retry/nested": 404,
		} {
			if code, body, _ := f.do(t, http.MethodPost, path, nil); code != want || body == "" {
				t.Errorf("POST %s: %d %s, want %d", path, code, body, want)
			}
		}
		if code, _, _ := f.do(t, http.MethodGet, fmt.Sprintf("/api/deadletters/%d/replay", f.deadSeq), nil); code != 405 {
			t.Errorf("GET of replay: %d, want 405", code)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for path, want := range map[string]string{
			"/api/flows/shop/1/counts":                         "want v1",
			"/api/flows/shop/v0/counts":                        "want v1",
			"/api/flows/shop/vx/counts":                        "want v1",
			"/api/flows/a.b/v1/counts":                         "flow",
			"/api/flows/_x/v1/counts":                          "flow",
			"/api/sagas/shop/a%20b":                            "saga id",
			"/api/sagas/sh%3Eop/ok1":                           "flow",
			"/api/sagas/shop/" + longID():                      "saga id",
			"/api/search":                                      "give one condition",
			"/api/search?q=total":                              "has no operator",
			"/api/search?q=%3D5":                               "names no attribute",
			"/api/search?q=colour%3Dred":                       "no registered flow has",
			"/api/search?q=colour%3Dred&flow=shop":             "no search attribute",
			"/api/search?q=colour%3Dred&flow=a.b":              "bad flow name",
			"/api/search?q=colour%3Dred&flow=shop&status=lost": "status",
		} {
			code, body, _ := f.do(t, http.MethodGet, path, nil)
			if code != 400 || !strings.Contains(body, want) {
				t.Errorf("GET %s: %d %s, want 400 saying %q", path, code, body, want)
			}
		}
		if code, body, _ := f.do(t, http.MethodGet, "/api/sagas/shop/nope", nil); code != 404 || !strings.Contains(body, "not found") {
			t.Errorf("GET of a missing saga: %d %s", code, body)
		}
	})

	t.Run("cross-site acts are refused", func(t *testing.T) {
		path := "/api/sagas/shop/stuck/retry"
		for name, h := range map[string]map[string]string{
			"no console header":     {console.ActionHeader: ""},
			"cross-site fetch":      {"Sec-Fetch-Site": "cross-site"},
			"same-site, other host": {"Sec-Fetch-Site": "same-site"},
			"another origin":        {"Origin": "http://evil.example"},
		} {
			code, body, _ := f.do(t, http.MethodPost, path, h)
			if code != http.StatusForbidden || !strings.Contains(body, "error") {
				t.Errorf("%s: %d %s, want 403", name, code, body)
			}
		}
		// A site whose name was made to resolve to the console's address.
		if code, body, _ := f.do(t, http.MethodGet, "/api/parked", map[string]string{"Host": "evil.example:80"}); code != http.StatusMisdirectedRequest {
			t.Errorf("rebound host: %d %s, want 421", code, body)
		}
		if st, _ := f.c.Get(context.Background(), f.flow, "stuck"); st.Status != saga.StatusCompensationFailed {
			t.Fatalf("a refused act changed the saga: %s", st.Status)
		}
	})

	t.Run("saga detail", func(t *testing.T) {
		var d struct {
			State    saga.State
			Timeline []struct {
				Step, Phase, Note, Status string
			}
		}
		f.getJSON(t, "/api/sagas/shop/stuck", &d)
		if d.State.Status != saga.StatusCompensationFailed || len(d.Timeline) < 4 {
			t.Fatalf("saga %+v", d)
		}
		notes := ""
		for _, e := range d.Timeline {
			notes += e.Step + ":" + e.Phase + "=" + e.Note + "\n"
		}
		if !strings.Contains(notes, "reserve:failed=sold out") || !strings.Contains(notes, "charge:parked=compensation of charge failed after 2 attempts: refund api <b>down</b>") {
			t.Errorf("timeline notes:\n%s", notes)
		}
	})

	t.Run("parked, then retried", func(t *testing.T) {
		var parked []struct {
			Flow, ID string
			Failed   []struct{ Step, Error string }
		}
		f.getJSON(t, "/api/parked", &parked)
		if len(parked) != 1 || parked[0].ID != "stuck" || len(parked[0].Failed) != 1 || parked[0].Failed[0].Step != "charge" {
			t.Fatalf("parked %+v", parked)
		}
		if code, body, _ := f.do(t, http.MethodPost, "/api/sagas/shop/ok1/retry", nil); code != http.StatusConflict || !strings.Contains(body, "not compensation_failed") {
			t.Errorf("retry of a completed saga: %d %s", code, body)
		}
		if code, body, _ := f.do(t, http.MethodPost, "/api/sagas/shop/nope/retry", nil); code != http.StatusNotFound {
			t.Errorf("retry of a missing saga: %d %s", code, body)
		}
		f.refundWorks.Store(true)
		code, body, _ := f.do(t, http.MethodPost, "/api/sagas/shop/stuck/retry", nil)
		if code != 200 || !strings.Contains(body, "compensates again") {
			t.Fatalf("retry: %d %s", code, body)
		}
		sagatest.AwaitStatus(t, f.c, f.flow, "stuck", 20*time.Second, saga.StatusCompensated)
		f.getJSON(t, "/api/parked", &parked)
		if len(parked) != 0 {
			t.Errorf("still parked: %+v", parked)
		}
	})
}

func longID() string { return strings.Repeat("x", 129) }

// Mounted under a prefix, the page and its endpoints answer there.
func TestConsoleUnderPrefix(t *testing.T) {
	s := sagatest.NewServer(t)
	mux := http.NewServeMux()
	mux.Handle("/ops/console/", http.StripPrefix("/ops/console", console.Handler(s.Client(), s.Ops())))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for path, want := range map[string]string{"/ops/console/": "console.js", "/ops/console/api/flows": "[]", "/ops/console/api/parked": "[]"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
	}
}

// WithToken: a browser brings the token once in the query and then in
// its cookie; a script as a bearer token; anything else is refused.
func TestConsoleToken(t *testing.T) {
	srv := sagatest.NewServer(t)
	token := console.NewToken()
	other := console.NewToken()
	if len(token) != 32 || token == other {
		t.Fatalf("tokens %q %q", token, other)
	}
	ts := httptest.NewServer(console.Handler(srv.Client(), srv.Ops(), console.WithToken(token)))
	t.Cleanup(ts.Close)
	get := func(path string, mod func(*http.Request)) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		if mod != nil {
			mod(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for what, mod := range map[string]func(*http.Request){
		"no token":        nil,
		"a wrong token":   func(r *http.Request) { r.URL.RawQuery = "token=" + other },
		"a wrong bearer":  func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+other) },
		"a forged cookie": func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "choreo_console_00000000", Value: other}) },
	} {
		for _, path := range []string{"/", "/api/flows", "/console.js"} {
			if resp := get(path, mod); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s, %s: %d, want 401", what, path, resp.StatusCode)
			}
		}
	}
	resp := get("/?token="+token, nil)
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 {
		t.Fatalf("with the token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	cookie := resp.Cookies()[0]
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Value != token {
		t.Errorf("cookie %+v", cookie)
	}
	if resp := get("/api/flows", func(r *http.Request) { r.AddCookie(cookie) }); resp.StatusCode != 200 {
		t.Errorf("with the cookie: %d", resp.StatusCode)
	}
	if resp := get("/api/flows", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }); resp.StatusCode != 200 {
		t.Errorf("with the bearer token: %d", resp.StatusCode)
	}
	// Another console's cookie has another name.
	ts2 := httptest.NewServer(console.Handler(srv.Client(), srv.Ops(), console.WithToken(other)))
	t.Cleanup(ts2.Close)
	r2, err := http.Get(ts2.URL + "/?token=" + other)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if len(r2.Cookies()) != 1 || r2.Cookies()[0].Name == cookie.Name {
		t.Errorf("two consoles' cookies: %v and %v", cookie, r2.Cookies())
	}
}
