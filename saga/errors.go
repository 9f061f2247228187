package saga

import "github.com/choreo-go/choreo/saga/internal/engine"

// Errors. Test for them with errors.Is; each method's doc names the ones it
// returns.
var (
	// ErrInvalidFlow is returned by Define for a flow that cannot run:
	// duplicate or malformed names, payload types that do not chain, a pivot
	// inside a parallel group, a compensatable step after the pivot.
	ErrInvalidFlow = engine.ErrInvalidFlow
	// ErrInvalidOption is returned when an option's value is out of range.
	ErrInvalidOption = engine.ErrInvalidOption
	// ErrInvalidID is returned for a saga id that is not 1 to 128
	// characters of [A-Za-z0-9_-].
	ErrInvalidID = engine.ErrInvalidID
	// ErrInvalidInput is returned by Start for an input that does not
	// encode or is over the event size limit.
	ErrInvalidInput = engine.ErrInvalidInput
	// ErrNotFound is returned when no saga has the flow and id asked for.
	ErrNotFound = engine.ErrNotFound
	// ErrRetired is returned by Start for a flow version an operator
	// retired or is draining (package ops): Start never starts another
	// version in its place.
	ErrRetired = engine.ErrRetired
	// ErrBound is returned by Handle and OnEnd when the step or name already
	// has a handler in this runner, or the runner is already running.
	ErrBound = engine.ErrBound
	// ErrUnsafeConfig is returned at start-up when a configuration would
	// lose sagas or deliveries: an existing stream on memory storage the
	// client did not ask for, unreplicated streams on a cluster, a consumer
	// of choreo's that is not a durable pull consumer with explicit acks.
	// WithUnsafe accepts the first two knowingly.
	ErrUnsafeConfig = engine.ErrUnsafeConfig
	// ErrStreamFull is returned by Start when the saga stream is near its
	// limits: new sagas are refused while there is still room for the
	// sagas in flight to finish.
	ErrStreamFull = engine.ErrStreamFull
	// ErrNotProvisioned is returned by New and Open when a stream is
	// missing or differs and the client's identity may not create or
	// update it: an admin provisions it (access.Provision).
	ErrNotProvisioned = engine.ErrNotProvisioned
)

// Abort wraps err as a business refusal (card declined, out of stock). A
// step action that returns it is not retried: the saga starts compensating.
// A plain error is retried with backoff instead. Abort(nil) returns nil.
func Abort(err error) error { return engine.Abort(err) }

// Abortf is Abort(fmt.Errorf(format, args...)).
func Abortf(format string, args ...any) error { return engine.Abortf(format, args...) }

// IsAbort reports whether err, or any error it wraps, was made by Abort.
func IsAbort(err error) bool { return engine.IsAbort(err) }
