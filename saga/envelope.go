package saga

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Header names. The ce- headers follow the CloudEvents NATS protocol
// binding (binary content mode); the choreo- headers carry the saga.
const (
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderType        = "ce-type"
	HeaderSource      = "ce-source"
	HeaderTime        = "ce-time"
	HeaderContentType = "content-type"
	HeaderSaga        = "choreo-saga"
	HeaderFlow        = "choreo-flow"
	HeaderVersion     = "choreo-version"
	HeaderStep        = "choreo-step"
	HeaderPhase       = "choreo-phase"
	HeaderEpoch       = "choreo-epoch"
	HeaderState       = "choreo-state"
	// HeaderAfter, on a compensation command, is the sequence of the saga
	// log event that made it due: its reader reads a state at least as new.
	HeaderAfter = "choreo-after"

	HeaderDeadReason   = "choreo-dlq-reason"
	HeaderDeadSubject  = "choreo-dlq-subject"
	HeaderDeadSequence = "choreo-dlq-sequence"
	HeaderDeadConsumer = "choreo-dlq-consumer"
	HeaderDeadTime     = "choreo-dlq-time"
)

// Phases: the last token of a saga log subject, or of a command.
const (
	phaseStart       = "start"
	phaseDone        = "done"
	phaseFailed      = "failed"
	phaseTimedOut    = "timed-out"
	phaseAbandoned   = "abandoned"
	phaseSkipped     = "skipped"
	phaseRetry       = "retry"
	phaseCompensated = "compensated"
	phaseCompRetry   = "undo-retry"
	phaseParked      = "parked"
	phaseDeadline    = "deadline"
	phaseResume      = "resume"
	phaseUndo        = "undo"
	phaseTimer       = "timer"

	sagaStep = "_saga" // the step token of saga-wide events
)

// Streams and subjects.
const (
	// StreamName is the stream that holds every saga's log and the
	// compensation commands.
	StreamName = "CHOREO"
	// TimerStream holds the saga deadlines: broker-side message schedules
	// and the timer events they fire.
	TimerStream = "CHOREO_TIMERS"
	// DeadLetterStream holds what choreo could not process, with the reason.
	DeadLetterStream = "CHOREO_DLQ"

	subjLog   = "choreo.log."
	subjCmd   = "choreo.cmd."
	subjSched = "choreo.sched."
	subjTimer = "choreo.timer."
	subjDead  = "choreo.dlq."
)

func logWildcard(flow, id string) string { return subjLog + flow + "." + id + ".>" }
func logSubject(flow, id, step, phase string) string {
	return subjLog + flow + "." + id + "." + step + "." + phase
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidID reports whether id can name a saga: 1 to 128 characters of
// [A-Za-z0-9_-], so that it is one NATS subject token.
func ValidID(id string) bool { return idRE.MatchString(id) }

func eventTypeFor(phase string) string { return "choreo.saga." + phase }

// header builds the envelope of a choreo message.
func (c *Client) header(flow string, version int, id, step, phase, ctype, msgID string, epoch int, now time.Time) nats.Header {
	h := make(nats.Header, 16)
	h.Set(HeaderSpecVersion, "1.0")
	h.Set(HeaderID, msgID)
	h.Set(HeaderType, ctype)
	h.Set(HeaderSource, c.opts.source)
	h.Set(HeaderTime, now.Format(time.RFC3339Nano))
	h.Set(HeaderContentType, "application/json")
	h.Set(HeaderSaga, id)
	h.Set(HeaderFlow, flow)
	h.Set(HeaderVersion, strconv.Itoa(version))
	h.Set(HeaderStep, step)
	h.Set(HeaderPhase, phase)
	if epoch > 0 {
		h.Set(HeaderEpoch, strconv.Itoa(epoch))
	}
	h.Set(nats.MsgIdHdr, msgID)
	return h
}

// envelope is a validated incoming choreo message.
type envelope struct {
	flow, id, step, phase, ctype string
	version, epoch               int
	time                         time.Time
	state                        *State // log events only
}

// badInput is a reason to dead-letter a message.
type badInput string

func (b badInput) Error() string { return string(b) }

func bad(format string, args ...any) error { return badInput(fmt.Sprintf(format, args...)) }

// one returns the single value of a header, or says why there is not one.
func one(h nats.Header, key string) (string, error) {
	v := h.Values(key)
	switch {
	case len(v) == 0 || (len(v) == 1 && v[0] == ""):
		return "", bad("missing header %s", key)
	case len(v) > 1:
		return "", bad("repeated header %s (%d values)", key, len(v))
	}
	return v[0], nil
}

// parseEnvelope checks everything a client could get wrong in a message
// choreo reads. It never panics; an error is a badInput with the reason.
func parseEnvelope(subject string, h nats.Header, data []byte, maxSize int) (*envelope, error) {
	if size := jsutil.Size(h, data); size > maxSize {
		return nil, bad("oversize: %d bytes, limit %d", size, maxSize)
	}
	if len(h) == 0 {
		return nil, bad("missing headers")
	}
	var e envelope
	var err error
	get := func(key string) string {
		if err != nil {
			return ""
		}
		var v string
		v, err = one(h, key)
		return v
	}
	spec := get(HeaderSpecVersion)
	get(HeaderID)
	e.ctype = get(HeaderType)
	get(HeaderSource)
	ts := get(HeaderTime)
	e.id = get(HeaderSaga)
	e.flow = get(HeaderFlow)
	ver := get(HeaderVersion)
	e.step = get(HeaderStep)
	e.phase = get(HeaderPhase)
	if err != nil {
		return nil, err
	}
	if spec != "1.0" {
		return nil, bad("unsupported ce-specversion %q", spec)
	}
	if e.time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
		return nil, bad("malformed ce-time %q", ts)
	}
	if e.version, err = strconv.Atoi(ver); err != nil || e.version < 1 {
		return nil, bad("malformed choreo-version %q", ver)
	}
	if ep := h.Values(HeaderEpoch); len(ep) > 1 {
		return nil, bad("repeated header %s", HeaderEpoch)
	} else if len(ep) == 1 {
		if e.epoch, err = strconv.Atoi(ep[0]); err != nil || e.epoch < 0 {
			return nil, bad("malformed choreo-epoch %q", ep[0])
		}
	}
	if !ValidID(e.id) {
		return nil, bad("malformed choreo-saga %q", e.id)
	}
	tok := strings.Split(subject, ".")
	switch {
	case strings.HasPrefix(subject, subjLog):
		if len(tok) != 6 || tok[2] != e.flow || tok[3] != e.id || tok[4] != e.step || tok[5] != e.phase {
			return nil, bad("subject %s does not match the headers (flow %s, saga %s, step %s, phase %s)", subject, e.flow, e.id, e.step, e.phase)
		}
		if got, want := h.Get(jetstream.ExpectedLastSubjSeqSubjHeader), logWildcard(e.flow, e.id); got != want {
			return nil, bad("not appended by choreo: no compare-and-set on %s", want)
		}
		raw, err := one(h, HeaderState)
		if err != nil {
			return nil, err
		}
		st, err := decodeState(raw)
		if err != nil {
			return nil, err
		}
		if st.ID != e.id || st.Flow != e.flow || st.Events < 1 {
			return nil, bad("choreo-state is for another saga")
		}
		e.state = st
	case strings.HasPrefix(subject, subjCmd):
		if len(tok) != 6 || tok[2] != e.flow || tok[3] != e.id || tok[4] != e.step || tok[5] != e.phase || e.phase != phaseUndo {
			return nil, bad("subject %s does not match the headers", subject)
		}
	case strings.HasPrefix(subject, subjTimer):
		if len(tok) != 4 || tok[2] != e.flow || tok[3] != e.id || e.phase != phaseTimer {
			return nil, bad("subject %s does not match the headers", subject)
		}
	default:
		return nil, bad("subject %s is not a choreo subject", subject)
	}
	if len(data) > 0 && !json.Valid(data) {
		return nil, bad("undecodable payload: not JSON")
	}
	return &e, nil
}
