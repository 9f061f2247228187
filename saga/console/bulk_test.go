package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/choreo-go/choreo/saga/console"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// A bulk act the page sends badly is refused with a 4xx and the reason,
// nothing started; an unknown act is a 404.
func TestBulkRequestsRefusedWithTheReason(t *testing.T) {
	s := sagatest.NewServer(t)
	srv := httptest.NewServer(console.Handler(s.Client(), s.Ops()))
	t.Cleanup(srv.Close)
	post := func(path, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		req.Header.Set(console.ActionHeader, "1")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/api/bulk/plan", `{`, 400, "bulk act"},
		{"/api/bulk/plan", `{"action":"cancel","reason":"x","extra":1}`, 400, "unknown field"},
		{"/api/bulk/plan", `{"action":"explode","reason":"x"}`, 400, "want cancel"},
		{"/api/bulk", `{"action":"cancel"}`, 400, "needs a reason"},
		{"/api/bulk/plan", `{"action":"cancel","reason":"x","status":["lost"]}`, 400, `status \"lost\"`},
		{"/api/bulk/plan", `{"action":"cancel","reason":"x","flow":"a b"}`, 400, "flow"},
		{"/api/bulk/plan", `{"action":"cancel","reason":"x","where":["total"]}`, 400, "no operator"},
		{"/api/bulk/plan", `{"action":"cancel","reason":"x","rate":-1}`, 400, "rate"},
		{"/api/bulk/nope/stop", `{}`, 404, "not found"},
	} {
		code, body := post(tc.path, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("POST %s %s: %d %s; want %d with %q", tc.path, tc.body, code, body, tc.code, tc.want)
		}
	}
	resp, err := http.Get(srv.URL + "/api/bulk")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"acts":[]`) {
		t.Errorf("GET /api/bulk after refusals: %d %s", resp.StatusCode, b)
	}
}
