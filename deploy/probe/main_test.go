package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestProbe(t *testing.T) {
	var sick atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			http.Error(w, "stream CHOREO missing", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if err := probe(srv.URL); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	sick.Store(true)
	if err := probe(srv.URL); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "stream CHOREO missing") {
		t.Fatalf("unhealthy: %v, want the status and the reason", err)
	}
	srv.Close()
	if err := probe(srv.URL); err == nil {
		t.Fatal("a closed server passed")
	}
}
