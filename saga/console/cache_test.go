package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// Any GET of api/flows/{flow}/v{N}/counts, with any flow name and version,
// even one from an <img> on another site, leaves the counts in the cache:
// the cache must not grow with them.
func TestCountsCacheIsBounded(t *testing.T) {
	s := sagatest.NewServer(t)
	h := &handler{c: s.Client(), op: s.Ops(), o: options{cache: time.Hour}, counts: map[string]cached{}}
	// Counts answer for registered versions only: register that many.
	_, js := s.Connect()
	kv, err := js.KeyValue(context.Background(), access.FlowsBucket)
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxCached + 100 {
		def := fmt.Sprintf(`{"name":"f","version":%d,"input":"In","steps":[{"name":"a","position":0,"kind":"pivot","event_type":"Out"}]}`, i+1)
		if _, err := kv.Put(context.Background(), fmt.Sprintf("def.f.v%d._", i+1), []byte(def)); err != nil {
			t.Fatal(err)
		}
	}
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
