package jsutil_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/saga/sagatest"
)

func TestEnsureStreamUpdatesOnlyWhatChanged(t *testing.T) {
	_, js := sagatest.NewServer(t).Connect()
	ctx := context.Background()
	cfg := jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage, Duplicates: time.Minute}
	s, err := jsutil.EnsureStream(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	created := s.CachedInfo().Created
	// The server's own spelling of the same configuration is "the same".
	if !jsutil.Same(s.CachedInfo().Config, cfg) {
		t.Fatalf("a stream just created does not match its config: %+v", s.CachedInfo().Config)
	}
	if _, err := jsutil.EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Duplicates = 2 * time.Minute
	s, err = jsutil.EnsureStream(ctx, js, cfg)
	if err != nil || s.CachedInfo().Config.Duplicates != 2*time.Minute || !s.CachedInfo().Created.Equal(created) {
		t.Fatalf("update: %v %+v", err, s.CachedInfo())
	}
}
