package console_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/choreo-go/choreo/saga/console"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// Another site's page cannot read the API (same-origin policy), but an
// <img> or <script> of it can still make the console scan the broker
// (api/parked lists every flow's sagas) as often as it likes: a read the
// browser says comes from another site is refused; the page itself may be
// reached from a link.
func TestCrossSiteReadsAreRefused(t *testing.T) {
	s := sagatest.NewServer(t)
	srv := httptest.NewServer(console.Handler(s.Client(), s.Ops()))
	defer srv.Close()
	for _, tc := range []struct {
		path, site string
		want       int
	}{
		{"/api/parked", "cross-site", http.StatusForbidden},
		{"/api/flows/x/v1/counts", "same-site", http.StatusForbidden},
		{"/api/deadletters", "cross-site", http.StatusForbidden},
		{"/api/parked", "same-origin", http.StatusOK},
		{"/api/parked", "none", http.StatusOK},
		{"/api/parked", "", http.StatusOK},
		{"/", "cross-site", http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
		if tc.site != "" {
			req.Header.Set("Sec-Fetch-Site", tc.site)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s from %q: %d, want %d", tc.path, tc.site, resp.StatusCode, tc.want)
		}
	}
}
