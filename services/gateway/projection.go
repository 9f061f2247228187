package gateway

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
)

// replay feeds rm every event from the stream's start, then keeps feeding
// it until ctx ends. caughtUp is called once it has read what was there.
func (s *Service) replay(ctx context.Context, rm *ReadModel, caughtUp func(), onChange func(*OrderRow)) error {
	cons, err := s.d.JS.OrderedConsumer(ctx, events.Stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	if info.NumPending == 0 && caughtUp != nil {
		caughtUp()
		caughtUp = nil
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); it.Stop(); jsutil.DropOrdered(s.d.JS, events.Stream, cons) }()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		topic := strings.TrimPrefix(m.Subject(), "events.")
		var verr error
		if typ, known := schemas.TypeOfTopic[topic]; known {
			verr = schemas.Validate(typ, m.Data())
		}
		if verr != nil {
			// The services' consumers dead-letter it; the view skips it.
			s.d.Logger.Warn("gateway: schema-invalid event skipped", "topic", topic, "err", verr)
		} else if row, err := rm.Apply(topic, m.Headers().Get("Nats-Msg-Id"), m.Data()); err != nil {
			s.d.Logger.Warn("gateway: unreadable event", "topic", topic, "err", err)
		} else if row != nil && onChange != nil {
			onChange(row)
		}
		if md, err := m.Metadata(); err == nil && md.NumPending == 0 && caughtUp != nil {
			caughtUp()
			caughtUp = nil
		}
	}
}

func (s *Service) project(ctx context.Context) error {
	return s.replay(ctx, s.rm.Load(), func() { s.ready.Store(true) }, func(row *OrderRow) {
		s.pushOrder(ctx, row.ID)
		s.pushStats()
	})
}

// Rebuild throws the read model away and replays the stream into a new
// one, which replaces it once it has caught up.
func (s *Service) Rebuild(ctx context.Context) error {
	s.rebuild.Lock()
	defer s.rebuild.Unlock()
	rm := NewReadModel()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- s.replay(rctx, rm, func() { close(done) }, nil) }()
	select {
	case <-done:
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	s.rm.Store(rm)
	return nil
}
