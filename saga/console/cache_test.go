package console

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
)

// Any GET of api/flows/{flow}/v{N}/counts, with any flow name and version,
// even one from an <img> on another site, leaves the counts in the cache:
// the cache must not grow with them.
func TestCountsCacheIsBounded(t *testing.T) {
	s := sagatest.NewServer(t)
	h := &handler{c: s.Client(), o: options{cache: time.Hour}, counts: map[string]cached{}}
	for i := range maxCached + 100 {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.SetPathValue("flow", "f")
		r.SetPathValue("version", fmt.Sprintf("v%d", i+1))
		w := httptest.NewRecorder()
		h.stepCounts(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("counts of f v%d: %d %s", i+1, w.Code, w.Body)
		}
	}
	if n := len(h.counts); n > maxCached {
		t.Errorf("the counts cache holds %d entries, want at most %d", n, maxCached)
	}
}
