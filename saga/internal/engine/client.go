package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/internal/wire"
)

// Client starts and queries sagas and owns choreo's streams. It is safe for
// concurrent use. Make one with New; the caller owns the NATS connection.
type Client struct {
	j    *journal
	opts options
	reg  *registry // the flow registry (versions.go)

	attached sync.Map // step consumer name -> time a runner was last seen on it

	roomMu   sync.Mutex
	roomAt   time.Time
	roomErr  error
	roomUsed int64 // events the sagas started since roomAt may append
	roomLeft int64 // events new sagas may still append then
}

// New creates or updates choreo's streams and returns a client. It returns
// an error wrapping ErrInvalidOption for a bad option, ErrUnsafeConfig when
// the existing streams would lose sagas (memory storage not asked for), or
// the broker's error.
func New(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Client, error) {
	c, err := newClient(js, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := c.checkSafety(ctx); err != nil {
		return nil, err
	}
	o := c.opts
	j := c.j
	storage := jetstream.FileStorage
	if o.memory {
		storage = jetstream.MemoryStorage
	}
	j.stream, err = jsutil.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "choreo: saga logs and compensation commands",
		// Ended sagas are removed after the retention by their timers
		// (WithRetention); MaxAge, off by default, is a blunt backstop.
		Subjects:    []string{wire.Log + ">", wire.Cmd + ">"},
		Storage:     storage,
		Replicas:    o.replicas,
		Duplicates:  o.duplicates,
		MaxAge:      o.maxAge,
		MaxMsgs:     o.maxMsgs,
		MaxBytes:    o.maxBytes,
		MaxMsgSize:  streamMaxMsg(o.maxEventSize),
		AllowDirect: true,
		// A full stream refuses new events rather than dropping old state.
		Discard: jetstream.DiscardNew,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: stream %s: %w", StreamName, notProvisioned(js.Conn(), StreamName, err))
	}
	// Schedules cannot live in a DiscardNew stream, and a schedule's target
	// must be in its stream: the timers have a stream of their own.
	j.timers, err = jsutil.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:              TimerStream,
		Description:       "choreo: saga deadlines and expiry: schedules and the timers they fire",
		Subjects:          []string{wire.Sched + ">", wire.Timer + ">"},
		Storage:           storage,
		Replicas:          o.replicas,
		Duplicates:        o.duplicates,
		MaxAge:            o.maxAge,
		AllowMsgSchedules: true,
		// A timer is headers only. The server refuses DiscardNew with
		// schedules, and DiscardOld would drop deadlines silently: the
		// stream has no byte limit (bound the account: docs/operating.md).
		MaxMsgSize: timerMaxMsg,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: stream %s: %w", TimerStream, notProvisioned(js.Conn(), TimerStream, err))
	}
	j.dlq, err = jsutil.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "choreo: messages that could not be processed, with the reason",
		Subjects:    []string{wire.Dead + ">"},
		Storage:     storage,
		Replicas:    o.replicas,
		Duplicates:  o.duplicates,
		AllowDirect: true,
		// Bounded: a dead letter keeps a payload's start (deadPrefix), so
		// one bigger than this was not written by choreo; when full, new
		// dead letters are refused (the runner retries the message later)
		// and the old ones stay until an operator purges them.
		MaxMsgSize: deadLetterMaxMsg,
		MaxBytes:   deadLetterMaxBytes,
		Discard:    jetstream.DiscardNew,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: stream %s: %w", DeadLetterStream, notProvisioned(js.Conn(), DeadLetterStream, err))
	}
	j.index, err = jsutil.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        IndexStream,
		Description: "choreo: the search index: one subject per attribute of a saga, no payload",
		Subjects:    []string{wire.Index + ">"},
		Storage:     storage,
		Replicas:    o.replicas,
		Duplicates:  o.duplicates,
		MaxAge:      o.maxAge,
		MaxBytes:    indexMaxBytes,
		// An entry is headers only; written again, it replaces itself.
		MaxMsgSize:        indexMaxMsg,
		MaxMsgsPerSubject: 1,
		AllowDirect:       true,
		// Full, it refuses new entries, and so new sagas with attributes,
		// rather than dropping those of sagas that stand.
		Discard: jetstream.DiscardNew,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: stream %s: %w", IndexStream, notProvisioned(js.Conn(), IndexStream, err))
	}
	if c.reg, err = openRegistry(ctx, js, o); err != nil {
		return nil, err
	}
	return c, nil
}

// The dead-letter stream's limits, the largest timer, and the search
// index's limits (about 150 bytes stored per entry: 7 million entries).
const (
	indexMaxMsg   = 4 * 1024
	indexMaxBytes = 1 << 30

	timerMaxMsg        = 16 * 1024
	deadLetterMaxMsg   = 256 * 1024
	deadLetterMaxBytes = 1 << 30
)

// streamMaxMsg is the largest message the saga stream takes: an event is
// at most maxEventSize with its state, plus headers (a trace, the
// compare-and-set); never below the server's default payload limit.
func streamMaxMsg(maxEventSize int) int32 {
	return int32(min(max(maxEventSize+64*1024, 1<<20), 64<<20))
}

// Open returns a client over streams that exist already, changing
// nothing in the broker: for tools (an operator's command line, a
// dashboard) that must never create or reconfigure choreo's streams. It
// returns an error wrapping ErrNotProvisioned when a stream or the flow
// registry is missing.
func Open(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Client, error) {
	c, err := newClient(js, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	j := c.j
	open := func(name string) (jetstream.Stream, error) {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("%w: stream %s does not exist: is choreo provisioned on this server?", ErrNotProvisioned, name)
		}
		if err != nil {
			return nil, fmt.Errorf("saga: stream %s: %w", name, err)
		}
		return s, nil
	}
	if j.stream, err = open(StreamName); err != nil {
		return nil, err
	}
	c.opts.replicas = j.stream.CachedInfo().Config.Replicas
	if j.timers, err = open(TimerStream); err != nil {
		return nil, err
	}
	if j.dlq, err = open(DeadLetterStream); err != nil {
		return nil, err
	}
	// The search index came later than the other streams: without it,
	// what reads it says it is not provisioned, and the rest works.
	if s, err := js.Stream(ctx, IndexStream); err == nil {
		j.index = s
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("saga: stream %s: %w", IndexStream, err)
	}
	kv, err := js.KeyValue(ctx, wire.FlowsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w: bucket %s does not exist: is choreo provisioned on this server?", ErrNotProvisioned, wire.FlowsBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("saga: bucket %s: %w", wire.FlowsBucket, err)
	}
	c.reg = newRegistry(ctx, js.Conn(), kv)
	return c, nil
}

// newClient applies the options and makes a client and its journal over
// js, without a word to the broker: New and Open then find the streams.
func newClient(js jetstream.JetStream, opts []Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if js == nil {
		return nil, fmt.Errorf("%w: nil JetStream", ErrInvalidOption)
	}
	pub, err := newPublisher(js)
	if err != nil {
		return nil, fmt.Errorf("saga: %w", err)
	}
	c := &Client{opts: o}
	c.j = &journal{js: js, pub: pub, nc: js.Conn(), opts: &c.opts, api: jsutil.APIPrefix(js), trust: newTrust()}
	return c, nil
}

// checkSafety refuses configurations that would lose sagas, and picks the
// replica count when none was asked for.
func (c *Client) checkSafety(ctx context.Context) error {
	o := &c.opts
	nc := c.j.nc
	clustered := nc.ConnectedClusterName() != ""
	if o.replicas == 0 {
		o.replicas = 1
		if clustered {
			o.replicas = 3
		}
	}
	if clustered && o.replicas == 1 && !o.unsafe {
		return fmt.Errorf("%w: the server is part of cluster %q but choreo's streams would have 1 replica, so losing that one server loses sagas; use WithReplicas(3), or WithUnsafe() to accept it",
			ErrUnsafeConfig, nc.ConnectedClusterName())
	}
	// Memory storage loses every saga on a restart: never take it over
	// silently.
	if existing, err := c.j.js.Stream(ctx, StreamName); err == nil && existing.CachedInfo().Config.Storage == jetstream.MemoryStorage && !o.memory && !o.unsafe {
		return fmt.Errorf("%w: stream %s uses memory storage, so sagas in flight are lost on a restart; recreate it with file storage, or pass saga.WithMemoryStorage() for a throwaway setup",
			ErrUnsafeConfig, StreamName)
	}
	return nil
}
