package saga

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-go/choreo/saga/internal/engine"
)

// Option configures a Client (New, Open). Each one checks its own value;
// a bad one makes New return an error wrapping ErrInvalidOption.
type Option = engine.Option

// WithMaxEventSize sets the largest event, headers included, that choreo
// accepts (default 512 KiB); a larger one is dead-lettered, and Start
// refuses a larger input.
func WithMaxEventSize(n int) Option { return engine.WithMaxEventSize(n) }

// WithRetention sets how long a saga that ended (completed or compensated)
// stays queryable before its log, commands and timers are removed (default
// 24 hours; 0 keeps them for ever). A saga still running, or
// parked as compensation_failed for an operator, is never removed: the
// clock starts when it ends. Each ended saga costs the broker about the
// memory of its subjects (see docs/performance.md) until
// then. The removal is a broker-side timer handled by any runner of the
// flow.
func WithRetention(d time.Duration) Option { return engine.WithRetention(d) }

// WithSource sets the CloudEvents source of the events this client
// publishes, typically the service's name (default "choreo").
func WithSource(s string) Option { return engine.WithSource(s) }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return engine.WithLogger(l) }

// WithUncheckedEvents turns off the check that every saga log event
// changes only what its step and phase may change (see the README's
// Security section): readers then take the state an event carries on
// trust. Use it only where every identity that may publish on the saga
// subjects is trusted with every saga's outcome; it saves a direct get
// per event that a process reads without having appended or checked the
// event before it.
func WithUncheckedEvents() Option { return engine.WithUncheckedEvents() }

// WithTracerProvider sets where choreo's spans go (default: the global
// TracerProvider, otel.GetTracerProvider, which is a no-op unless the
// program sets one).
func WithTracerProvider(tp trace.TracerProvider) Option { return engine.WithTracerProvider(tp) }

// WithClock replaces the clock choreo reads the saga's times from: when a
// step's wait or a saga's deadline has passed, and the times a state
// records. It is for tests that move time (sagatest.Clock, which also
// fires the broker's schedules that its time makes due); give every
// client of the test the same clock.
func WithClock(now func() time.Time) Option { return engine.WithClock(now) }
