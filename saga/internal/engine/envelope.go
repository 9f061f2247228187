package engine

import (
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/internal/wire"
)

// Streams. Provision them (or let New create them) with these names.
const (
	// StreamName is the stream that holds every saga's log and the
	// compensation commands.
	StreamName = wire.Stream
	// TimerStream holds the saga deadlines and the expiry of ended sagas:
	// broker-side message schedules and the timer events they fire.
	TimerStream = wire.TimerStream
	// DeadLetterStream holds what choreo could not process, with the reason.
	DeadLetterStream = wire.DeadLetterStream
	// IndexStream holds the search index: the sagas' attributes.
	IndexStream = wire.IndexStream
)

// logPhases are the phases a saga log event may have.
var logPhases = map[Phase]bool{
	PhaseStart: true, PhaseDone: true, PhaseFailed: true, PhaseTimedOut: true, PhaseAbandoned: true,
	PhaseSkipped: true, PhaseRetry: true, PhaseCompensated: true, PhaseCompensationRetry: true,
	PhaseParked: true, PhaseDeadline: true, PhaseResume: true, PhaseCancelled: true, PhaseWaiting: true, PhaseBegin: true,
	PhaseReverted: true, PhasePaused: true, PhaseUnpaused: true, PhaseHeld: true, PhaseNoted: true,
}

// sagaPhases are the phases of saga-wide events (step "_saga").
var sagaPhases = map[Phase]bool{PhaseStart: true, PhaseDeadline: true, PhaseResume: true, PhaseCancelled: true, PhaseBegin: true, PhaseReverted: true,
	PhasePaused: true, PhaseUnpaused: true, PhaseNoted: true}

// envelope is a validated incoming choreo message: whose it is, from the
// subject, and what it carries, from the few headers choreo writes.
type envelope struct {
	flow, id, step string
	version        int    // the flow version, from the subject
	phase          Phase  // log events
	state          *State // log events
	epoch          int    // commands
	after          uint64 // commands: the log event that made it due
	timer          string // timers: wire.TimerDeadline, TimerExpire, TimerBegin or TimerStep
	attempt        int    // a step's timer: the attempt it belongs to
}

// one returns the single value of a header, or says why there is not one.
func oneHeader(h nats.Header, key string) (string, error) {
	v := h[key]
	switch {
	case len(v) == 0 || (len(v) == 1 && v[0] == ""):
		return "", bad("missing header %s", key)
	case len(v) > 1:
		return "", bad("repeated header %s (%d values)", key, len(v))
	}
	return v[0], nil
}

// optional returns a header's number, 0 when absent.
func optional(h nats.Header, key string) (uint64, error) {
	switch v := h[key]; {
	case len(v) == 0:
		return 0, nil
	case len(v) > 1:
		return 0, bad("repeated header %s (%d values)", key, len(v))
	default:
		n, err := strconv.ParseUint(v[0], 10, 63)
		if err != nil {
			return 0, bad("malformed %s %q", key, v[0])
		}
		return n, nil
	}
}

// parseEnvelope checks everything a client could get wrong in a message
// choreo reads, short of its payload, which the handler's decoding checks
// once. It never panics; an error is a badInput with the reason.
func parseEnvelope(subject string, h nats.Header, data []byte, maxSize int) (*envelope, error) {
	if size := jsutil.Size(h, data); size > maxSize {
		return nil, bad("oversize: %d bytes, limit %d", size, maxSize)
	}
	if len(h) == 0 {
		return nil, bad("missing headers")
	}
	var e envelope
	switch {
	case len(subject) > len(wire.Log) && subject[:len(wire.Log)] == wire.Log:
		tok, ok := wire.Tokens(subject, 7)
		if !ok {
			return nil, bad("subject %s is not a saga log subject", subject)
		}
		e.flow, e.id, e.step, e.phase = tok[2], tok[3], tok[5], Phase(tok[6])
		if err := e.check(tok[4]); err != nil {
			return nil, err
		}
		if !logPhases[e.phase] || (e.step == wire.SagaStep) != sagaPhases[e.phase] {
			return nil, bad("unknown event %s:%s on %s", e.step, e.phase, subject)
		}
		if got, want := h.Get(jetstream.ExpectedLastSubjSeqSubjHeader), wire.LogWildcard(e.flow, e.id); got != want {
			return nil, bad("not appended by choreo: no compare-and-set on %s", want)
		}
		raw, err := oneHeader(h, wire.State)
		if err != nil {
			return nil, err
		}
		if e.state, err = decodeState(e.flow, e.id, raw); err != nil {
			return nil, err
		}
		if e.state.Version != e.version {
			return nil, bad("state of version %d on a subject of version %d", e.state.Version, e.version)
		}
	case len(subject) > len(wire.Cmd) && subject[:len(wire.Cmd)] == wire.Cmd:
		tok, ok := wire.Tokens(subject, 7)
		if !ok || tok[6] != wire.Undo {
			return nil, bad("subject %s is not a command subject", subject)
		}
		e.flow, e.id, e.step = tok[2], tok[3], tok[5]
		if err := e.check(tok[4]); err != nil {
			return nil, err
		}
		epoch, err := optional(h, wire.Epoch)
		if err != nil {
			return nil, err
		}
		e.epoch = int(epoch)
		after, err := oneHeader(h, wire.After)
		if err != nil {
			return nil, err
		}
		if e.after, err = strconv.ParseUint(after, 10, 63); err != nil {
			return nil, bad("malformed %s %q", wire.After, after)
		}
	case len(subject) > len(wire.Timer) && subject[:len(wire.Timer)] == wire.Timer:
		tok, ok := wire.Tokens(subject, 6)
		if !ok {
			if tok, ok = wire.Tokens(subject, 5); !ok {
				return nil, bad("subject %s is not a timer subject", subject)
			}
		}
		e.flow, e.id, e.step = tok[2], tok[3], wire.SagaStep
		if len(tok) == 6 {
			e.step = tok[5] // a step's own timer
		}
		if err := e.check(tok[4]); err != nil {
			return nil, err
		}
		kind, err := oneHeader(h, wire.TimerKind)
		if err != nil {
			return nil, err
		}
		switch {
		case e.step != wire.SagaStep && kind == wire.TimerStep:
			n, err := optional(h, wire.Attempt)
			if err != nil || n == 0 || n > 1<<20 {
				return nil, bad("step timer without a valid %s", wire.Attempt)
			}
			e.attempt = int(n)
		case e.step == wire.SagaStep && (kind == wire.TimerDeadline || kind == wire.TimerExpire || kind == wire.TimerBegin):
		default:
			return nil, bad("unknown timer %q on %s", kind, subject)
		}
		e.timer = kind
	default:
		return nil, bad("subject %s is not a choreo subject", subject)
	}
	return &e, nil
}

// check validates the names the subject gave, and reads its version.
func (e *envelope) check(version string) error {
	v, ok := wire.ParseVersion(version)
	if !ok || !wire.Token(e.flow) || !ValidID(e.id) || (e.step != wire.SagaStep && !wire.Token(e.step)) {
		return bad("malformed subject tokens (flow %q, saga %q, version %q, step %q)", e.flow, e.id, version, e.step)
	}
	e.version = v
	return nil
}

// rogue says why a log event was not appended by choreo, or "" when it may
// have been. read is how many copies of Nats-Subject and Nats-Sequence the
// read itself added (1 for a direct get, 0 through a consumer): a message
// that carried its own is forged. choreo appends every event with
// compare-and-set, and only a start may expect an empty history.
func rogue(h nats.Header, env *envelope, read int) string {
	switch {
	case len(h[jetstream.SubjectHeader]) != read || len(h[jetstream.SequenceHeader]) != read:
		return "carries the broker's own headers (Nats-Subject, Nats-Sequence): not appended by choreo"
	case len(h[jetstream.ExpectedLastSubjSeqHeader]) != 1:
		// A copy published without compare-and-set (a replayed or forged
		// event) could carry an older state than the log's.
		return "no compare-and-set header (Nats-Expected-Last-Subject-Sequence): not appended by choreo"
	case h.Get(jetstream.ExpectedLastSubjSeqHeader) == "0" && env.phase != PhaseStart:
		return "unknown saga: first event is not a start"
	}
	return ""
}
