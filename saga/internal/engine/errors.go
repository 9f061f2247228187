package engine

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
)

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrInvalidFlow is returned by Define for a flow that cannot run:
	// duplicate or malformed names, payload types that do not chain, a pivot
	// inside a parallel group, a compensatable step after the pivot.
	ErrInvalidFlow = errors.New("saga: invalid flow")
	// ErrInvalidOption is returned when an option's value is out of range.
	ErrInvalidOption = errors.New("saga: invalid option")
	// ErrInvalidID is returned for a saga id that is not a single NATS
	// subject token of [A-Za-z0-9_-] (1 to 128 characters).
	ErrInvalidID = errors.New("saga: invalid saga id")
	// ErrInvalidInput is returned by Start when the input's type is not the
	// flow's input type.
	ErrInvalidInput = errors.New("saga: invalid input")
	// ErrNotFound is returned when no saga has the flow and id asked for.
	ErrNotFound = errors.New("saga: not found")
	// ErrNotParked is returned by RetryCompensation for a saga that is not
	// in the compensation_failed state.
	ErrNotParked = errors.New("saga: saga is not compensation_failed")
	// ErrNotRunning is returned by Cancel for a saga that is not running,
	// or that ran its pivot (it can only go forward).
	ErrNotRunning = errors.New("saga: saga is not running")
	// ErrNotPaused is returned by ResumeSaga for a saga that is not paused,
	// and by ResumeStep for a flow version or step that is not.
	ErrNotPaused = errors.New("saga: not paused")
	// ErrStopped is returned by Bulk when the act was stopped (StopBulk,
	// or its context) before it went through every saga.
	ErrStopped = errors.New("saga: bulk act stopped")
	// ErrRetired is returned by Start for a flow version that is retired
	// or draining (ops.Client.Retire): Start never starts another version in
	// its place.
	ErrRetired = errors.New("saga: flow version retired")
	// ErrBound is returned by Handle when the step already has a handler in
	// this runner, or the runner is already running.
	ErrBound = errors.New("saga: step already bound")
	// ErrUnsafeConfig is returned at start-up when a configuration would
	// lose sagas or deliveries: an existing stream on memory storage the
	// client did not ask for, unreplicated streams on a cluster, a consumer
	// of choreo's that is not a durable pull consumer with explicit acks.
	// An explicit unsafe option accepts the first two knowingly.
	ErrUnsafeConfig = errors.New("saga: unsafe configuration")
	// ErrStreamFull is returned by Start when the saga stream is near its
	// limits: new sagas are refused while there is still room for the
	// sagas in flight to finish.
	ErrStreamFull = errors.New("saga: stream full")
	// ErrNotProvisioned is returned by New when a stream is missing or
	// differs and the client's identity may not create or update it: an
	// admin provisions it (Provision).
	ErrNotProvisioned = errors.New("saga: not provisioned")
	// ErrLater, returned by the action of a step completed later
	// (WaitsFor), says the step started and its outcome comes later.
	ErrLater = errors.New("saga: the step's outcome comes later")
	// ErrInvalidToken is returned by Complete and Fail for a completion
	// token that is malformed or names another step.
	ErrInvalidToken = errors.New("saga: invalid completion token")
	// ErrNotWaiting is returned by Complete and Fail when the step the
	// token names does not wait for that attempt's outcome: it was
	// completed or failed already, or the token is an earlier attempt's.
	ErrNotWaiting = errors.New("saga: step is not waiting")
	// ErrWaitOver is returned by Complete and Fail after the step's wait
	// timed out: its timeout decides the step, not the completion.
	ErrWaitOver = errors.New("saga: the step's wait is over")
	// ErrCompensated is returned by Complete for a step whose saga
	// compensated it (or is compensating it) before the completion came:
	// the effect the completion reports must be undone by its caller.
	ErrCompensated = errors.New("saga: the step was compensated; undo the late effect")
	// ErrKeyRing is returned by NewKeyRing, ParseKeyRing and LoadKeyRing
	// (and so by WithKeyFile) for a key ring that cannot seal: no key, a
	// malformed line, a repeated id, a key of the wrong size.
	ErrKeyRing = errors.New("saga: bad key ring")
	// ErrNoKey is returned when a payload is sealed with a key the client's
	// key ring does not hold (or the client has none).
	ErrNoKey = errors.New("saga: payload encrypted with a key not given")
	// ErrUnsealable is returned when a sealed payload does not open with its
	// key: it was altered, or moved from another saga, step or phase.
	ErrUnsealable = errors.New("saga: sealed payload does not open")
)

// abortError marks a business "no": the step will not succeed however often
// it is retried, so the saga compensates.
type abortError struct{ err error }

func (e *abortError) Error() string { return e.err.Error() }
func (e *abortError) Unwrap() error { return e.err }

// Abort wraps err as a business refusal (card declined, out of stock). A step
// action that returns it is not retried: the saga starts compensating. A plain
// error is retried with backoff instead. Abort(nil) returns nil.
func Abort(err error) error {
	if err == nil {
		return nil
	}
	return &abortError{err: err}
}

// Abortf is Abort(fmt.Errorf(format, args...)).
func Abortf(format string, args ...any) error {
	return Abort(fmt.Errorf(format, args...))
}

// IsAbort reports whether err, or any error it wraps, was made by Abort.
func IsAbort(err error) bool {
	var a *abortError
	return errors.As(err, &a)
}

// badInput is a reason to dead-letter a message.
type badInput string

func (b badInput) Error() string { return string(b) }

func bad(format string, args ...any) error { return badInput(fmt.Sprintf(format, args...)) }

// notProvisioned explains the failure to create or update a stream on a
// connection whose identity was refused it.
func notProvisioned(nc *nats.Conn, stream string, err error) error {
	if nc != nil && errors.Is(nc.LastError(), nats.ErrPermissionViolation) && strings.Contains(nc.LastError().Error(), "."+stream) {
		return fmt.Errorf("%w: stream %s is missing or differs from what this client wants, and its identity may not create or update it: run provisioning (access.Provision) with the admin identity, with the same settings (%v)",
			ErrNotProvisioned, stream, err)
	}
	return err
}

// Every event carries the whole state that follows from it, so that a
// reader acts on one message. A participant that may append on its own
// steps' subjects could write any state there: say a charge "done" whose
// state reads the saga completed. Readers therefore check that each event
// changes only what its step and phase may change: the event is replayed
// on the state it follows (the compare-and-set sequence names it, and the
// broker enforced it), with the step's own fields (attempts, error, time)
// taken from the event, and the result must be the state the event
// carries, byte for byte. A start must be the initial state of the flow's
// definition. What does not check is dead-lettered as "forged: …" and the
// saga carries on with the honest state.
//
// The check walks back from an event to one this journal already trusts
// (it appended it, or checked it before) or to the start, and trusts
// what it checked. A process that appended an event checks its successor
// without a read; one that sees a saga for the first time reads the
// events back to one it knows, a direct get each.

// forgedError says why an event does not follow from the saga's log.
type forgedError struct {
	seq     uint64 // the event that does not check
	why     string
	missing bool // it follows an event that is not in the log
	// start: the saga's start does not match the flow as defined here.
	// The reader's definition may be the wrong one (two builds with one
	// version), so the start is refused but never deleted.
	start bool
}

func (e *forgedError) Error() string { return "forged: " + e.why }

// errUndecodable marks a payload that does not decode into the step's type.
type errUndecodable struct{ err error }

// Undecodable marks err as a payload that does not decode into the
// handler's type: the delivery is dead-lettered, not retried.
func Undecodable(err error) error { return errUndecodable{err} }

func (e errUndecodable) Error() string { return "undecodable payload: " + e.err.Error() }
