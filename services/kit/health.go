package kit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/events"
)

// Streams are the streams the shop cannot work without: choreo's and the
// domain events'.
var Streams = []string{access.StreamName, access.TimerStream, access.DeadLetterStream, events.Stream, events.DeadLetterStream}

// Buckets are the services' own buckets (OpenStore). A service that opens
// another adds it here, so that /healthz checks it.
var Buckets = []string{"customer", "orders", "payment", "payment_tokens", "inventory", "inventory-archive", "billing", "shipping", "notification"}

// healthTTL is how long a health result is kept: a probe polled often
// costs the broker one round of stream lookups a second at most.
const healthTTL = time.Second

// Health says whether the broker serves what the shop needs: the
// connection is up and every stream and bucket exists.
type Health struct {
	js      jetstream.JetStream
	streams []string
	buckets []string

	mu  sync.Mutex
	at  time.Time
	err error
}

// NewHealth checks the streams and buckets named over js.
func NewHealth(js jetstream.JetStream, streams, buckets []string) *Health {
	return &Health{js: js, streams: streams, buckets: buckets}
}

// Check returns nil when all is there, or an error whose text is the
// first reason found ("stream CHOREO missing"). A result is reused for a
// second.
func (h *Health) Check(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && time.Since(h.at) < healthTTL {
		return h.err
	}
	h.err = h.check(ctx)
	h.at = time.Now()
	return h.err
}

func (h *Health) check(ctx context.Context) error {
	if st := h.js.Conn().Status(); st != nats.CONNECTED {
		return fmt.Errorf("not connected to the broker (%s)", st)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for _, name := range h.streams {
		_, err := h.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("stream %s missing", name)
		}
		if err != nil {
			return fmt.Errorf("stream %s: %v", name, err)
		}
	}
	for _, b := range h.buckets {
		_, err := h.js.KeyValue(ctx, b)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("bucket %s missing", b)
		}
		if err != nil {
			return fmt.Errorf("bucket %s: %v", b, err)
		}
	}
	return nil
}
