package engine

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/choreo-go/choreo/internal/option"
	"go.opentelemetry.io/otel/trace"
)

// Option configures a Client. Each one checks its own value and returns an
// error wrapping ErrInvalidOption.
type Option func(*options) error

type options struct {
	replicas     int
	memory       bool
	duplicates   time.Duration
	maxEventSize int
	maxAge       time.Duration
	retention    time.Duration
	source       string
	logger       *slog.Logger
	maxMsgs      int64
	maxBytes     int64
	headroom     float64
	unsafe       bool
	unchecked    bool
	tracer       trace.Tracer // trace.go
	observer     Observer     // observe.go
	clock        func() time.Time
	ring         *KeyRing // crypt.go: nil, payloads are stored in clear
}

func defaultOptions() options {
	return options{
		replicas:     0, // 3 on a cluster, 1 on a single server
		duplicates:   2 * time.Minute,
		maxEventSize: 512 * 1024,
		source:       "choreo",
		headroom:     0.2,
		maxBytes:     DefaultStreamMaxBytes,
		retention:    DefaultRetention,
		logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		tracer:       defaultTracer(),
	}
}

// WithReplicas sets the replica count of choreo's streams (1, 3 or 5). The
// default is 3 when the server is part of a cluster and 1 otherwise. With 3
// each write waits for a quorum of two servers, which costs a network round
// trip per saga step, and survives the loss of any one server; 1 on a
// cluster is refused unless WithUnsafe is given too.
func WithReplicas(n int) Option {
	return checked(option.Replicas(n), func(o *options) { o.replicas = n })
}

// WithMemoryStorage keeps choreo's streams in memory instead of files.
// Everything is lost when the server stops, sagas in flight included: use it
// only for throwaway tests and benchmarks. The default is file storage.
// Durability of file storage also depends on the server's sync setting:
// with the default (sync every 2 minutes) a machine crash, not a process
// crash, can lose the last writes; sync_interval: always (SyncAlways when
// embedded) fsyncs every write and costs throughput.
func WithMemoryStorage() Option {
	return func(o *options) error { o.memory = true; return nil }
}

// WithDuplicateWindow sets how long the broker remembers message ids to drop
// duplicate publishes (default 2 minutes). Longer windows cost server memory
// per message in the window.
func WithDuplicateWindow(d time.Duration) Option {
	return checked(option.AtLeast("duplicate window", d, time.Second), func(o *options) { o.duplicates = d })
}

// WithMaxEventSize sets the largest event, headers included, that choreo
// accepts (default 512 KiB); a larger one is dead-lettered, and Start
// refuses a larger input.
func WithMaxEventSize(n int) Option {
	return checked(option.MaxEventSize(n), func(o *options) { o.maxEventSize = n })
}

// DefaultRetention is how long an ended saga is kept by default.
const DefaultRetention = 24 * time.Hour

// WithClock replaces the clock the saga's times are read from (when a
// step's wait or a deadline has passed, the times a state records): for
// tests that move time (sagatest.Clock). The broker's schedules keep the
// broker's clock; a test clock fires them itself.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidOption)
		}
		o.clock = now
		return nil
	}
}

// WithRetention sets how long a saga that ended (completed or compensated)
// stays queryable before its log, commands and timers are removed (default
// DefaultRetention; 0 keeps them for ever). A saga still running, or
// parked as compensation_failed for an operator, is never removed: the
// clock starts when it ends. Each ended saga costs the broker about the
// memory of its subjects (see docs/performance.md) until
// then. The removal is a broker-side timer handled by any runner of the
// flow.
func WithRetention(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 || (d > 0 && d < time.Second) {
			return fmt.Errorf("%w: retention must be 0 (for ever) or at least 1s, got %v", ErrInvalidOption, d)
		}
		o.retention = d
		return nil
	}
}

// WithMaxAge bounds how long anything in the saga stream is kept (default:
// for ever), running sagas included: a saga older than this loses its
// state. Prefer WithRetention, which removes only ended sagas; MaxAge is a
// backstop, to set well above the longest saga.
func WithMaxAge(d time.Duration) Option {
	return checked(option.AtLeast("max age", d, time.Minute), func(o *options) { o.maxAge = d })
}

// WithSource sets the CloudEvents source of the events this client
// publishes, typically the service's name (default "choreo").
func WithSource(s string) Option {
	return checked(option.Source(s), func(o *options) { o.source = s })
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return checked(option.Logger(l), func(o *options) { o.logger = l })
}

// set makes an option from a check of its value and its setter.
func checked(check error, fn func(*options)) Option {
	return Option(option.New(ErrInvalidOption, check, fn))
}

// WithStreamLimits bounds the saga stream: at most maxMsgs messages (0 or
// -1: no stepLimit) and maxBytes bytes (0: the default, DefaultStreamMaxBytes;
// -1: no stepLimit). The broker then refuses writes beyond the limits instead
// of dropping old state, and Start refuses new sagas (ErrStreamFull) once
// less than a fifth of either limit is left, so that the sagas in flight
// keep room to finish. Keep the limits well above sagas in flight times
// events per saga.
func WithStreamLimits(maxMsgs, maxBytes int64) Option {
	return func(o *options) error {
		if maxMsgs < -1 || maxBytes < -1 {
			return fmt.Errorf("%w: negative stream limit", ErrInvalidOption)
		}
		if (maxMsgs > 0 && maxMsgs < 100) || (maxBytes > 0 && maxBytes < 1<<20) {
			return fmt.Errorf("%w: stream limits below 100 messages or 1 MiB leave no room for sagas in flight", ErrInvalidOption)
		}
		o.maxMsgs, o.maxBytes = max(maxMsgs, 0), maxBytes
		if maxBytes == 0 {
			o.maxBytes = DefaultStreamMaxBytes
		}
		return nil
	}
}

// DefaultStreamMaxBytes bounds the saga stream when WithStreamLimits does
// not say otherwise: 10 GiB, millions of sagas' events, and far from a
// disk filled by one identity's flood.
const DefaultStreamMaxBytes = 10 << 30

// WithUnsafe accepts configurations that lose sagas when a server fails:
// unreplicated streams on a cluster, taking over streams on memory
// storage. Without it New refuses them with ErrUnsafeConfig. For tests and
// throwaway setups only.
func WithUnsafe() Option {
	return func(o *options) error { o.unsafe = true; return nil }
}

// WithUncheckedEvents turns off the check that every saga log event
// changes only what its step and phase may change (see the README's
// Security section): readers then take the state an event carries on
// trust. Use it only where every identity that may publish on the saga
// subjects is trusted with every saga's outcome; it saves a direct get
// per event that a process reads without having appended or checked the
// event before it.
func WithUncheckedEvents() Option {
	return func(o *options) error {
		o.unchecked = true
		return nil
	}
}

// WithTracerProvider sets where choreo's spans go (default: the global
// TracerProvider, otel.GetTracerProvider, which is a no-op unless the
// program sets one).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) error {
		if tp == nil {
			return fmt.Errorf("%w: nil TracerProvider", ErrInvalidOption)
		}
		o.tracer = tp.Tracer(tracerName)
		return nil
	}
}

// WithObserver has o told what this client and its runners do (default:
// nothing is told).
func WithObserver(o Observer) Option {
	return func(opts *options) error {
		if o == nil {
			return fmt.Errorf("%w: nil Observer", ErrInvalidOption)
		}
		opts.observer = o
		return nil
	}
}

// WithKeyRing encrypts the payloads choreo stores (inputs, results, the
// text of the errors handlers return) with the ring's first key, and
// opens those sealed by any of its keys (crypt.go says what is sealed and
// how). Handlers see plain values. Every client and runner of a
// deployment needs the ring; one without it reads sealed payloads as
// "encrypted" and cannot run the steps whose input is sealed.
func WithKeyRing(r *KeyRing) Option {
	return func(o *options) error {
		if r == nil || len(r.ids) == 0 {
			return fmt.Errorf("%w: empty key ring", ErrInvalidOption)
		}
		o.ring = r
		return nil
	}
}

// WithKeyFile is WithKeyRing with the ring read from a file
// (LoadKeyRing): its error is one line naming the file and what is wrong.
func WithKeyFile(path string) Option {
	return func(o *options) error {
		r, err := LoadKeyRing(path)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
		o.ring = r
		return nil
	}
}
