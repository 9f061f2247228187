// Package events carries plain domain events between services (event
// collaboration: a service keeps a local copy of another's data, built from
// its events) with the same guarantees as choreo's sagas. It is Watermill:
// messages are watermill messages, handlers run in a watermill Router with
// its middleware (poison queue, retry, recoverer), and the wire format is
// watermill-nats's, so watermill-nats publishers and subscribers interoperate.
//
// The transport is nats.go JetStream, because watermill-nats v2.1.3 has
// sharp edges in the way of those guarantees. Each is covered here and
// proven by a test:
//
//   - its publisher sets no Nats-Msg-Id, so a retried publish is stored
//     twice: Publisher sets it to the message's UUID;
//   - its publisher waits for one PubAck per message: Publisher pipelines a
//     batch and waits for all PubAcks;
//   - its grouped consumer sets Name but not Durable: Subscriber creates
//     Durable consumers, one per (group, topic), shared by the group;
//   - its unmarshaler rejects repeated headers and the handler then
//     dereferences a nil message: Subscriber never fails to build a
//     message, marks the problem, and the router dead-letters it;
//   - its Subscriber.Close drains the caller's connection, and closes the
//     output channel before draining the consumer, so a message arriving
//     then panics with a send on a closed channel: Subscriber stops
//     consuming, waits for its callbacks, and only then closes the channel;
//     the connection stays the caller's.
//
// # Streams
//
// Events live in the CHOREO_EVENTS stream on subjects events.<topic>;
// dead letters in CHOREO_EVENTS_DLQ on events_dlq.<topic>, with the reason
// in the reason_poisoned metadata.
//
// Both have limits and refuse what is beyond them (discard new) rather
// than drop what they hold: CHOREO_EVENTS 10 GiB (WithStreamMaxBytes) and
// messages up to the event size plus 64 KiB (at least 1 MiB);
// CHOREO_EVENTS_DLQ 1 GiB and 256 KiB per message. A dead letter never
// amplifies: it keeps the event's metadata, its size
// (choreo_dead_size), its SHA-256 (choreo_dead_hash) and at most the
// first 16 KiB of its payload. When the dead-letter stream is full, the
// poisoned event is not acknowledged and comes back later.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/internal/option"
	"github.com/choreo-go/choreo/internal/wire"
	"github.com/choreo-go/choreo/saga"
)

const (
	// Stream holds the events.
	Stream = wire.EventStream
	// DeadLetterStream holds the events no handler could take.
	DeadLetterStream = "CHOREO_EVENTS_DLQ"

	subjectPrefix = wire.EventPrefix
	deadPrefix    = "events_dlq."
	// PoisonKey is the metadata key under which Subscriber marks a message
	// it could not read faithfully (repeated headers).
	PoisonKey = "choreo_poison"
)

// ErrInvalidOption is returned for an option whose value is out of range.
var ErrInvalidOption = errors.New("events: invalid option")

// ErrUnsafeConfig is returned when a configuration would lose events: an
// existing consumer that is not a durable pull consumer with explicit acks.
var ErrUnsafeConfig = errors.New("events: unsafe configuration")

// Option configures a Bus.
type Option func(*options) error

type options struct {
	replicas   int
	duplicates time.Duration
	ackWait    time.Duration
	retries    int
	source     string
	logger     *slog.Logger
	maxSize    int
	maxBytes   int64
}

// WithStreamMaxBytes bounds the event stream (default 10 GiB; -1: no
// bound). A full stream refuses new events (the publish fails), never
// drops old ones.
func WithStreamMaxBytes(n int64) Option {
	return func(o *options) error {
		if n < -1 || (n > 0 && n < 1<<20) {
			return fmt.Errorf("%w: stream limit %d: want -1 or at least 1 MiB", ErrInvalidOption, n)
		}
		o.maxBytes = n
		if n == 0 {
			o.maxBytes = defaultMaxBytes
		}
		return nil
	}
}

// The streams' limits.
const (
	defaultMaxBytes  = 10 << 30
	deadMaxMsgSize   = 256 << 10
	deadMaxBytes     = 1 << 30
	deadPayloadBytes = 16 << 10 // how much of a payload a dead letter keeps
)

// WithReplicas sets the replica count of the event streams (1, 3 or 5);
// the default is 3 when the server is part of a cluster, 1 otherwise.
func WithReplicas(n int) Option {
	return set(option.Replicas(n), func(o *options) { o.replicas = n })
}

// WithAckWait sets how long a handler may take before the broker
// redelivers its message (default 30s); Subscriber sends progress
// acknowledgements while a handler runs, so this bounds how soon the work
// of a crashed process moves elsewhere.
func WithAckWait(d time.Duration) Option {
	return set(option.AtLeast("ack wait", d, 100*time.Millisecond), func(o *options) { o.ackWait = d })
}

// WithRetries sets how often the router retries a failing handler before
// dead-lettering the message (default 3).
func WithRetries(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("%w: negative retries", ErrInvalidOption)
		}
		o.retries = n
		return nil
	}
}

// WithMaxEventSize sets the largest event, headers included, that a
// Subscriber hands to a handler (default 512 KiB); a larger one is
// dead-lettered with the reason "oversize".
func WithMaxEventSize(n int) Option {
	return set(option.MaxEventSize(n), func(o *options) { o.maxSize = n })
}

// WithSource sets the CloudEvents source of published events.
func WithSource(s string) Option {
	return set(option.Source(s), func(o *options) { o.source = s })
}

// WithLogger sets where the bus logs its dead letters and retries
// (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return set(option.Logger(l), func(o *options) { o.logger = l })
}

// set is an option that checks its value, then sets it with fn.
func set(check error, fn func(*options)) Option {
	return Option(option.New(ErrInvalidOption, check, fn))
}

// Bus publishes and subscribes to domain events through JetStream. The
// caller owns the connection behind js.
type Bus struct {
	js   jetstream.JetStream
	opts options
	pub  *Publisher
	dead *Publisher
	wlog watermill.LoggerAdapter
}

// New creates or updates the event streams and returns a bus.
func New(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Bus, error) {
	o := options{replicas: 0, duplicates: 2 * time.Minute, ackWait: 30 * time.Second, retries: 3, source: "choreo", maxSize: 512 << 10, maxBytes: defaultMaxBytes,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	if o.replicas == 0 { // 3 on a cluster, 1 on a single server
		o.replicas = 1
		if js.Conn().ConnectedClusterName() != "" {
			o.replicas = 3
		}
	}
	for _, cfg := range []jetstream.StreamConfig{
		{Name: Stream, Subjects: []string{subjectPrefix + ">"}, Storage: jetstream.FileStorage, Replicas: o.replicas, Duplicates: o.duplicates, Discard: jetstream.DiscardNew,
			MaxBytes: o.maxBytes, MaxMsgSize: int32(min(max(o.maxSize+64<<10, 1<<20), 64<<20)),
			Description: "choreo: domain events"},
		{Name: DeadLetterStream, Subjects: []string{deadPrefix + ">"}, Storage: jetstream.FileStorage, Replicas: o.replicas, Duplicates: o.duplicates, Discard: jetstream.DiscardNew,
			MaxBytes: deadMaxBytes, MaxMsgSize: deadMaxMsgSize,
			Description: "choreo: domain events no handler could take, with the reason"},
	} {
		if _, err := jsutil.EnsureStream(ctx, js, cfg); err != nil {
			return nil, fmt.Errorf("events: stream %s: %w", cfg.Name, jsutil.Refused(js.Conn(), cfg.Name, err))
		}
	}
	b := &Bus{js: js, opts: o, wlog: watermill.NewSlogLogger(o.logger)}
	b.pub = &Publisher{js: js, prefix: subjectPrefix, source: o.source}
	b.dead = &Publisher{js: js, prefix: deadPrefix, source: o.source, idKey: middleware.PoisonedHandlerKey, bounded: true}
	return b, nil
}

// Publisher returns the bus's publisher.
func (b *Bus) Publisher() *Publisher { return b.pub }

// Subscriber returns a subscriber for a consumer group: every subscriber of
// one group shares one durable consumer per topic, so the instances of a
// service split the work and each event reaches each group once.
func (b *Bus) Subscriber(group string) (*Subscriber, error) {
	if !tokenOK(group) {
		return nil, fmt.Errorf("%w: group %q must be a NATS subject token", ErrInvalidOption, group)
	}
	return &Subscriber{js: b.js, group: group, ackWait: b.opts.ackWait, maxSize: b.opts.maxSize, logger: b.opts.logger}, nil
}

// NewRouter returns a watermill router with choreo's middleware: a
// recovered panic or a handler error is retried, except an error made by
// saga.Abort (a refusal that retrying cannot mend, as in a saga step), and
// what still fails is dead-lettered with the reason and acknowledged, so
// one bad event never blocks the others.
func (b *Bus) NewRouter() (*message.Router, error) {
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, b.wlog)
	if err != nil {
		return nil, err
	}
	poison, err := middleware.PoisonQueue(b.dead, "poisoned")
	if err != nil {
		return nil, err
	}
	retry := middleware.Retry{
		MaxRetries: b.opts.retries, InitialInterval: 20 * time.Millisecond, MaxInterval: time.Second, Multiplier: 2,
		Logger:      b.wlog,
		ShouldRetry: func(p middleware.RetryParams) bool { return !saga.IsAbort(p.Err) },
	}
	r.AddMiddleware(middleware.CorrelationID, poison, retry.Middleware, middleware.Recoverer, rejectPoison)
	return r, nil
}

// rejectPoison stops a message Subscriber marked as unreadable.
func rejectPoison(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if reason := msg.Metadata.Get(PoisonKey); reason != "" {
			return nil, saga.Abort(errors.New(reason))
		}
		return h(msg)
	}
}

// Handle adds a handler for the events of one topic to router r, for
// consumer group group. The payload is JSON-decoded into T; an event that
// does not decode is dead-lettered.
func Handle[T any](r *message.Router, b *Bus, group, topic string, fn func(ctx context.Context, event T) error) error {
	sub, err := b.Subscriber(group)
	if err != nil {
		return err
	}
	if !topicOK(topic) {
		return fmt.Errorf("%w: topic %q", ErrInvalidOption, topic)
	}
	r.AddConsumerHandler(group+"."+topic, topic, sub, func(msg *message.Message) error {
		var v T
		if err := json.Unmarshal(msg.Payload, &v); err != nil {
			return saga.Abort(fmt.Errorf("undecodable payload: %w", err))
		}
		return fn(msg.Context(), v)
	})
	return nil
}

// Publish publishes one event as JSON. The id identifies the event: two
// publishes with the same id inside the broker's duplicate window store
// one event, so a retried publish is safe.
func Publish[T any](ctx context.Context, b *Bus, topic, id string, event T) error {
	data, err := json.Marshal(event)
	if err != nil {
		return fmt.Errorf("events: encode %s: %w", topic, err)
	}
	msg := message.NewMessage(id, data)
	msg.SetContext(ctx)
	return b.pub.Publish(topic, msg)
}

// DeadLetter is an event no handler could take. Message holds its
// metadata and at most the first 16 KiB of its payload; Size and Hash
// ("sha256:<hex>") are the whole payload's.
type DeadLetter struct {
	Topic   string
	Reason  string
	Size    int
	Hash    string
	Message *message.Message
}

// Metadata keys of a dead letter: the payload's size and hash.
const (
	DeadSizeKey = "choreo_dead_size"
	DeadHashKey = "choreo_dead_hash"
)

// DeadLetters returns what was dead-lettered, oldest first.
func (b *Bus) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	cons, err := b.js.OrderedConsumer(ctx, DeadLetterStream, jetstream.OrderedConsumerConfig{InactiveThreshold: jsutil.ScanInactivity})
	if err != nil {
		return nil, err
	}
	defer jsutil.DropOrdered(b.js, DeadLetterStream, cons)
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	for pending := info.NumPending; pending > 0; {
		batch, err := cons.Fetch(int(min(pending, 500)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			pending = md.NumPending
			wm := toMessage(m, 0) // every dead letter is read back, however large
			size, _ := strconv.Atoi(wm.Metadata.Get(DeadSizeKey))
			out = append(out, DeadLetter{Topic: wm.Metadata.Get(middleware.PoisonedTopicKey), Reason: wm.Metadata.Get(middleware.ReasonForPoisonedKey),
				Size: size, Hash: wm.Metadata.Get(DeadHashKey), Message: wm})
		}
		if n == 0 {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
	return out, nil
}

func tokenOK(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// topicOK accepts dot-separated tokens: a topic is a subject suffix.
func topicOK(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if !tokenOK(s[start:i]) {
				return false
			}
			start = i + 1
		}
	}
	return true
}
