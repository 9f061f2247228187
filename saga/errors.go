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
	// ErrLater, returned by the action of a step completed later
	// (WaitsFor), says the step started and its outcome comes later: see
	// Later.
	ErrLater = engine.ErrLater
	// ErrInvalidToken is returned by Step.Complete and Step.Fail for a
	// completion token that is malformed or names another step.
	ErrInvalidToken = engine.ErrInvalidToken
	// ErrNotWaiting is returned by Step.Complete and Step.Fail when the
	// step does not wait for the token's attempt: it was completed or
	// failed already (a second completion), or the token is an earlier
	// attempt's. Nothing changed.
	ErrNotWaiting = engine.ErrNotWaiting
	// ErrWaitOver is returned by Step.Complete and Step.Fail after the
	// step's wait timed out. Nothing changed: the timeout decides the step.
	ErrWaitOver = engine.ErrWaitOver
	// ErrCompensated is returned by Step.Complete for a step the saga
	// compensated (or is compensating) before the completion came: a
	// deadline passed, an operator cancelled, another step failed, or the
	// wait timed out. Nothing changed, and the effect the completion
	// reports was not compensated: the caller must undo it.
	ErrCompensated = engine.ErrCompensated
	// ErrKeyRing is returned by NewKeyRing, ParseKeyRing and LoadKeyRing
	// (and by New for WithKeyFile) for a key ring that cannot seal: no
	// key, a malformed line, a repeated id, a key of the wrong size.
	ErrKeyRing = engine.ErrKeyRing
	// ErrNoKey is returned when a payload is sealed with a key the
	// client's key ring does not hold, or the client has none.
	ErrNoKey = engine.ErrNoKey
	// ErrUnsealable is returned when a sealed payload does not open with
	// its key: it was altered, or moved from another saga, step or phase.
	ErrUnsealable = engine.ErrUnsealable
)

// Abort wraps err as a business refusal (card declined, out of stock). A
// step action that returns it is not retried: the saga starts compensating.
// A plain error is retried with backoff instead. Abort(nil) returns nil.
func Abort(err error) error { return engine.Abort(err) }

// Abortf is Abort(fmt.Errorf(format, args...)).
func Abortf(format string, args ...any) error { return engine.Abortf(format, args...) }

// IsAbort reports whether err, or any error it wraps, was made by Abort.
func IsAbort(err error) bool { return engine.IsAbort(err) }
