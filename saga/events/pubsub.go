package events

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
)

// Publisher is a watermill publisher onto JetStream. Every message is
// stored once per UUID (its Nats-Msg-Id), and a batch is pipelined: all
// messages are sent, then all PubAcks awaited.
type Publisher struct {
	js     jetstream.JetStream
	prefix string
	source string
	// idKey names a metadata value that joins the UUID in the message id:
	// dead letters of one event from two handlers are two letters.
	idKey string
	// bounded makes a dead-letter publisher: each message keeps its
	// metadata, its payload's size and hash and at most deadPayloadBytes
	// of the payload, so a dead letter is never larger than what it copies.
	bounded bool
}

var _ message.Publisher = (*Publisher)(nil)

var marshaler = &wmnats.NATSMarshaler{}

// Publish publishes messages on topic and returns when the broker has
// stored all of them, or the first error. The context of the first message
// bounds the wait (10s when it has no deadline).
func (p *Publisher) Publish(topic string, messages ...*message.Message) error {
	if !topicOK(topic) {
		return fmt.Errorf("%w: topic %q", ErrInvalidOption, topic)
	}
	if len(messages) == 0 {
		return nil
	}
	ctx := messages[0].Context()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	futures := make([]jetstream.PubAckFuture, 0, len(messages))
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, msg := range messages {
		if p.bounded {
			msg = bound(msg)
		}
		nm, err := marshaler.Marshal(p.prefix+topic, msg)
		if err != nil {
			return fmt.Errorf("events: marshal %s: %w", msg.UUID, err)
		}
		id := msg.UUID
		if p.idKey != "" {
			id += "/" + msg.Metadata.Get(p.idKey)
		}
		nm.Header.Set(nats.MsgIdHdr, id)
		for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": msg.UUID, "ce-type": topic, "ce-source": p.source, "ce-time": now, "content-type": "application/json"} {
			if nm.Header.Get(k) == "" {
				nm.Header.Set(k, v)
			}
		}
		f, err := p.js.PublishMsgAsync(nm)
		if err != nil {
			return fmt.Errorf("events: publish %s: %w", msg.UUID, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("events: publish %s: %w", messages[i].UUID, err)
		case <-ctx.Done():
			return fmt.Errorf("events: publish %s: %w", messages[i].UUID, ctx.Err())
		}
	}
	return nil
}

// bound returns a copy of msg whose payload is at most deadPayloadBytes,
// with the whole payload's size and hash in its metadata, and at most
// deadMetadata values of its metadata, each cut to deadValueBytes (the
// router's own, the reason and the topic, always kept).
func bound(msg *message.Message) *message.Message {
	sum := sha256.Sum256(msg.Payload)
	c := message.NewMessage(msg.UUID, msg.Payload[:min(len(msg.Payload), deadPayloadBytes)])
	keys := slices.Sorted(maps.Keys(msg.Metadata))
	router := func(k string) int { // the router's keys first
		switch k {
		case middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey, middleware.PoisonedSubscriberKey, PoisonKey:
			return 0
		}
		return 1
	}
	slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(router(a), router(b)) })
	for _, k := range keys[:min(len(keys), deadMetadata)] {
		v := msg.Metadata[k]
		c.Metadata.Set(k[:min(len(k), deadValueBytes)], v[:min(len(v), deadValueBytes)])
	}
	c.Metadata.Set(DeadSizeKey, strconv.Itoa(len(msg.Payload)))
	c.Metadata.Set(DeadHashKey, "sha256:"+hex.EncodeToString(sum[:]))
	c.SetContext(msg.Context())
	return c
}

// How much of a message's metadata a dead letter keeps.
const (
	deadMetadata   = 64
	deadValueBytes = 1024
)

// Close does nothing: the connection is the caller's.
func (p *Publisher) Close() error { return nil }

// Subscriber is a watermill subscriber on a durable JetStream consumer per
// (group, topic). Messages are acknowledged only when the handler acks
// them, after it has finished; a nack is redelivered.
type Subscriber struct {
	js      jetstream.JetStream
	group   string
	ackWait time.Duration
	maxSize int
	logger  *slog.Logger

	mu     sync.Mutex
	subs   []*subscription
	closed bool
}

var _ message.Subscriber = (*Subscriber)(nil)

type subscription struct {
	cc   jetstream.ConsumeContext
	stop chan struct{}
	out  chan *message.Message
	once sync.Once
	// mu orders the callbacks' inflight.Add after a check of stopped, and
	// end's Wait after stopped is set: no callback joins once end waits.
	mu       sync.Mutex
	stopped  bool
	inflight sync.WaitGroup
	missing  atomic.Bool // said once: the consumer or its stream is gone
}

// ConsumerName is the durable consumer a group uses for a topic.
func ConsumerName(group, topic string) string {
	return group + "__" + strings.ReplaceAll(topic, ".", "_")
}

// Subscribe starts delivering topic's events, from the first one the group
// has not yet taken, until ctx ends or Close.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if !topicOK(topic) {
		return nil, fmt.Errorf("%w: topic %q", ErrInvalidOption, topic)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("events: subscriber closed")
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	why, err := jsutil.UnsafeConsumer(cctx, s.js, Stream, ConsumerName(s.group, topic))
	if err == nil && why != "" {
		err = fmt.Errorf("%w: %s; delete it (nats consumer rm %s %s) and choreo recreates it", ErrUnsafeConfig, why, Stream, ConsumerName(s.group, topic))
	}
	if err != nil {
		return nil, fmt.Errorf("events: consumer for %s/%s: %w", s.group, topic, err)
	}
	cons, err := s.js.CreateOrUpdateConsumer(cctx, Stream, jetstream.ConsumerConfig{
		Durable:       ConsumerName(s.group, topic),
		Description:   fmt.Sprintf("choreo events: group %s, topic %s", s.group, topic),
		FilterSubject: subjectPrefix + topic,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.ackWait,
		MaxDeliver:    -1,
		MaxAckPending: 64,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("events: consumer for %s/%s: %w", s.group, topic, err)
	}
	sub := &subscription{stop: make(chan struct{}), out: make(chan *message.Message)}
	sub.cc, err = cons.Consume(func(m jetstream.Msg) {
		sub.mu.Lock()
		if sub.stopped {
			sub.mu.Unlock()
			return // left unacknowledged: redelivered
		}
		sub.inflight.Add(1)
		sub.mu.Unlock()
		defer sub.inflight.Done()
		s.deliver(ctx, sub, m, topic)
	}, jetstream.PullMaxMessages(64), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// A missing consumer or stream is said once, at error level:
		// this subscription receives nothing more until the service
		// restarts (and recreates it). The rest are passing failures.
		gone := errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, jetstream.ErrStreamNotFound)
		if gone && sub.missing.CompareAndSwap(false, true) {
			s.logger.Error("events: consumer missing (its stream or the consumer was deleted): this service receives no more "+topic+" events until it restarts",
				"consumer", ConsumerName(s.group, topic), "stream", Stream, "err", err)
			return
		}
		s.logger.Debug("events: consume", "consumer", ConsumerName(s.group, topic), "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("events: consume %s/%s: %w", s.group, topic, err)
	}
	s.subs = append(s.subs, sub)
	go func() {
		select {
		case <-ctx.Done():
		case <-sub.stop:
		}
		s.end(sub)
	}()
	return sub.out, nil
}

// end stops a subscription: no more deliveries, wait for the callbacks in
// flight, then close the channel.
func (s *Subscriber) end(sub *subscription) {
	sub.once.Do(func() {
		sub.mu.Lock()
		sub.stopped = true
		close(sub.stop)
		sub.mu.Unlock()
		sub.cc.Stop()
		sub.inflight.Wait()
		close(sub.out)
	})
}

func (s *Subscriber) deliver(ctx context.Context, sub *subscription, m jetstream.Msg, topic string) {
	msg := toMessage(m, s.maxSize)
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msg.SetContext(mctx)
	select {
	case sub.out <- msg:
	case <-sub.stop:
		return
	case <-ctx.Done():
		return
	}
	tick := time.NewTicker(s.ackWait / 3)
	defer tick.Stop()
	for {
		select {
		case <-msg.Acked():
			if err := m.DoubleAck(mctx); err != nil {
				s.logger.Warn("events: ack", "topic", topic, "err", err)
			}
			return
		case <-msg.Nacked():
			_ = m.NakWithDelay(time.Second)
			return
		case <-tick.C:
			_ = m.InProgress()
		case <-sub.stop:
			return // unacknowledged: redelivered
		case <-ctx.Done():
			return
		}
	}
}

// toMessage builds a watermill message from a JetStream one. It never
// fails: a message it cannot read faithfully is marked with PoisonKey and
// the router dead-letters it.
func toMessage(m jetstream.Msg, maxSize int) *message.Message {
	h := m.Headers()
	var problems []string
	if size := jsutil.Size(h, m.Data()); maxSize > 0 && size > maxSize {
		problems = append(problems, fmt.Sprintf("oversize: %d bytes, limit %d", size, maxSize))
	}
	for k, v := range h {
		if len(v) > 1 {
			problems = append(problems, fmt.Sprintf("repeated header %s (%d values)", k, len(v)))
		}
	}
	var msg *message.Message
	if len(problems) == 0 {
		var err error
		msg, err = marshaler.Unmarshal(&nats.Msg{Subject: m.Subject(), Header: h, Data: m.Data()})
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	if msg == nil {
		msg = message.NewMessage("", m.Data())
		for k, v := range h {
			if len(v) > 0 {
				msg.Metadata.Set(k, v[0])
			}
		}
	}
	if msg.UUID == "" {
		msg.UUID = h.Get(nats.MsgIdHdr)
	}
	if msg.UUID == "" {
		if md, err := m.Metadata(); err == nil {
			msg.UUID = fmt.Sprintf("%s-%d", md.Stream, md.Sequence.Stream)
		}
	}
	if len(problems) > 0 {
		msg.Metadata.Set(PoisonKey, strings.Join(problems, "; "))
	}
	return msg
}

// Close ends every subscription of this subscriber. It leaves the
// connection open: it is the caller's.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	subs := s.subs
	s.mu.Unlock()
	for _, sub := range subs {
		s.end(sub)
	}
	return nil
}
