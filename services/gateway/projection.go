package gateway

import (
	"context"
	"strings"

	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
)

// ViewReader is the name the gateway's view consumers of the event stream
// go by (events.ViewConsumer): its identity's, which
// events.ReadAccess("gateway") lets create them and no others.
const ViewReader = "gateway"

// replay feeds rm every event from the stream's start, then keeps feeding
// it until ctx ends. caughtUp is called once it has read what was there.
func (s *Service) replay(ctx context.Context, rm *ReadModel, caughtUp func(), onChange func(*OrderRow)) error {
	// Its own consumer, by name (events.ReadAccess): each instance, and a
	// rebuild beside the live view, claims a view consumer of its own.
	v, err := events.OpenView(ctx, s.d.JS, ViewReader)
	if err != nil {
		return err
	}
	defer v.Close()
	if v.Pending() == 0 && caughtUp != nil {
		caughtUp()
		caughtUp = nil
	}
	for {
		m, pending, err := v.Next(ctx)
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
		if pending == 0 && caughtUp != nil {
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
