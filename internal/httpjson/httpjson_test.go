package httpjson_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/choreo-go/choreo/internal/httpjson"
)

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name   string
		write  func(w http.ResponseWriter)
		status int
		body   string
	}{
		{"a value", func(w http.ResponseWriter) { httpjson.Write(w, http.StatusCreated, map[string]int{"n": 1}) }, 201, `{"n":1}`},
		{"markup is escaped", func(w http.ResponseWriter) { httpjson.Write(w, http.StatusOK, "<script>&") }, 200, `"\u003cscript\u003e\u0026"`},
		{"an error", func(w http.ResponseWriter) { httpjson.Error(w, http.StatusNotFound, "no order o-1") }, 404, `{"error":"no order o-1"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.write(rec)
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d", rec.Code, tc.status)
			}
			if got := rec.Header().Get("Content-Type"); got != httpjson.ContentType {
				t.Errorf("Content-Type %q, want %q", got, httpjson.ContentType)
			}
			if got := strings.TrimSpace(rec.Body.String()); got != tc.body {
				t.Errorf("body %s, want %s", got, tc.body)
			}
		})
	}
}

// slowBody fails as a body still arriving after the read deadline does.
type slowBody struct{}

func (slowBody) Read([]byte) (int, error) { return 0, timeoutError{} }

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestDecode(t *testing.T) {
	type order struct {
		ID  string `json:"id"`
		Qty int    `json:"qty"`
	}
	for _, tc := range []struct {
		name   string
		body   io.Reader
		ok     bool
		status int    // of the answer, when not ok
		says   string // in the answer's error, when not ok
	}{
		{"one object", strings.NewReader(`{"id":"o-1","qty":2}`), true, 0, ""},
		{"an unknown field", strings.NewReader(`{"id":"o-1","price":2}`), false, 400, "unknown field"},
		{"two objects", strings.NewReader(`{"id":"o-1"} {"id":"o-2"}`), false, 400, "one object expected"},
		{"not JSON", strings.NewReader(`id=o-1`), false, 400, "bad JSON"},
		{"invalid UTF-8", strings.NewReader("{\"id\":\"o\xff\"}"), false, 400, "UTF-8"},
		{"too big", bytes.NewReader(append([]byte(`{"id":"`), bytes.Repeat([]byte("a"), httpjson.MaxBody)...)), false, 413, "64 KiB"},
		{"too slow", slowBody{}, false, 408, "too slowly"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			var got order
			ok := httpjson.Decode(rec, httptest.NewRequest(http.MethodPost, "/", tc.body), &got)
			if ok != tc.ok {
				t.Fatalf("Decode = %v, want %v (answer %d %s)", ok, tc.ok, rec.Code, rec.Body)
			}
			if ok {
				if got != (order{ID: "o-1", Qty: 2}) {
					t.Errorf("decoded %+v", got)
				}
				if rec.Body.Len() != 0 {
					t.Errorf("answered %s on success", rec.Body)
				}
				return
			}
			var answer struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.status || !strings.Contains(answer.Error, tc.says) {
				t.Errorf("answered %d %q, want %d and %q", rec.Code, answer.Error, tc.status, tc.says)
			}
		})
	}
}
