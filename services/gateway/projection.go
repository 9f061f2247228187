package gateway

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
)

// ViewReader is the name the gateway's view consumers of the event stream
// go by (events.ViewConsumer): its identity's, which
// events.ReadAccess("gateway") lets create them and no others.
const ViewReader = "gateway"

// replay feeds rm (nil: the read model served, whichever it is) every
// event from the stream's start, then keeps feeding it until ctx ends.
// caughtUp is called once it has read what was there; read, when not nil,
// holds the stream sequence of the last event read.
func (s *Service) replay(ctx context.Context, rm *ReadModel, caughtUp func(), onChange func(*OrderRow), read *atomic.Uint64) error {
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
		} else if row, err := s.apply(rm, m, topic); err != nil {
			s.d.Logger.Warn("gateway: unreadable event", "topic", topic, "err", err)
		} else if row != nil && onChange != nil {
			onChange(row)
		}
		if md, err := m.Metadata(); err == nil && read != nil {
			read.Store(md.Sequence.Stream)
		}
		if pending == 0 && caughtUp != nil {
			caughtUp()
			caughtUp = nil
		}
	}
}

func (s *Service) project(ctx context.Context) error {
	return s.replay(ctx, nil, func() { s.ready.Store(true) }, func(row *OrderRow) {
		s.pushOrder(ctx, row.ID)
		s.pushStats()
	}, nil)
}

// apply applies m to rm, or, for the live view (rm nil), to the read model
// served now: a rebuild replaces it, and the live view goes on into the
// new one (Apply skips what the rebuild read too).
func (s *Service) apply(rm *ReadModel, m jetstream.Msg, topic string) (*OrderRow, error) {
	if rm != nil {
		return rm.Apply(topic, m.Headers().Get("Nats-Msg-Id"), m.Data())
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if md, err := m.Metadata(); err == nil {
		s.liveSeq = md.Sequence.Stream
	}
	return s.rm.Load().Apply(topic, m.Headers().Get("Nats-Msg-Id"), m.Data())
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
	var read atomic.Uint64
	go func() { errc <- s.replay(rctx, rm, func() { close(done) }, nil, &read) }()
	select {
	case <-done:
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	// Swap, then read on until the new model has everything the live view
	// put into the old one before the swap: it puts the rest in the new.
	s.applyMu.Lock()
	s.rm.Store(rm)
	live := s.liveSeq
	s.applyMu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for read.Load() < live {
		select {
		case <-tick.C:
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
