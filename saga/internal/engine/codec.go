package engine

import (
	"github.com/choreo-go/choreo/internal/wire"
	"go.opentelemetry.io/otel/trace"

	"net/url"
	"strconv"
	"strings"
	"time"
)

// The state travels in the Choreo-State header of every saga log event and
// is read on every hop, so it has a compact text form (JSON cost a quarter
// of the runner's CPU, and its size the broker's):
//
//	c3|version|status|events|epoch|started|updated|ended|deadline|reason|earlier|steps[|trace[|scheduled[|parent[|paused]]]]
//
// where the trailing fields are optional (so that older states decode),
// each left empty when a later one is there: trace, the saga's trace id
// (32 hex digits), for a saga started with tracing on (trace.go);
// scheduled, when a saga started for later begins; parent, for a child
// saga, <flow>.<id>.<step> of the saga and step that started it;
// paused, for a saga an operator paused, "<by> <at> <bulk> <reason>"
// escaped (held, on a step, is "h" for a step its pause holds);
// earlier lists the stream sequences of the saga's earlier events,
// the first in base 36 and each next one as its distance from the one
// before, joined by ',' ("*" when there were too many to list), and
// with steps joined by ';', each
//
//	name,position,kind+status,attempts,trigger,done,compAttempts,started,ended,compensated,error,compError,waitUntil,waitingOn[,held]
//
// The flow and the saga id are the subject's. A number 0 and a zero time
// are empty fields, and a step's trailing empty fields are left out, so a
// pending step costs its name and four bytes. The saga's start is Unix
// microseconds in base 36; every other time is microseconds since the
// start, in base 36. The status, kinds and step statuses are one letter
// each. Reason and the errors are query-escaped, so they hold no separator; the
// other fields are tokens.
const codecVersion = "c3"

// timeUnit is the precision of the times in a state.
const timeUnit = time.Microsecond

var (
	kindCode   = map[StepKind]byte{CompensatableStep: 'c', PivotStep: 'p', RetriableStep: 'r'}
	statusCode = map[StepStatus]byte{StepPending: 'p', StepRunning: 'r', StepCompleted: 'c', StepFailed: 'f',
		StepSkipped: 's', StepCompensated: 'x', StepCompensationFailed: 'X', StepUnknown: 't', StepWaiting: 'w'}
	sagaCode = map[Status]byte{StatusRunning: 'r', StatusCompleted: 'c', StatusCompensating: 'g',
		StatusCompensated: 'x', StatusCompensationFailed: 'X', StatusScheduled: 's'}
	kindOf     [256]StepKind
	statusOf   [256]StepStatus
	sagaStatus [256]Status
)

func init() {
	for k, c := range kindCode {
		kindOf[c] = k
	}
	for k, c := range statusCode {
		statusOf[c] = k
	}
	for k, c := range sagaCode {
		sagaStatus[c] = k
	}
}

func appendNum(b []byte, n int) []byte {
	if n == 0 {
		return b
	}
	return strconv.AppendInt(b, int64(n), 10)
}

func appendTime(b []byte, t, base time.Time) []byte {
	if t.IsZero() {
		return b
	}
	return strconv.AppendInt(b, int64(t.Sub(base)/timeUnit), 36)
}

func appendText(b []byte, s string) []byte {
	if s == "" {
		return b
	}
	return append(b, url.QueryEscape(s)...)
}

func encodeState(s *State) []byte {
	b := make([]byte, 0, 64+24*len(s.Steps))
	b = append(b, codecVersion...)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(s.Version), 10)
	b = append(b, '|', sagaCode[s.Status], '|')
	b = strconv.AppendInt(b, int64(s.Events), 10)
	b = append(b, '|')
	b = appendNum(b, s.Epoch)
	b = append(b, '|')
	b = strconv.AppendInt(b, s.StartedAt.UnixMicro(), 36)
	for _, t := range [...]time.Time{s.UpdatedAt, s.EndedAt, s.Deadline} {
		b = append(b, '|')
		b = appendTime(b, t, s.StartedAt)
	}
	b = append(b, '|')
	b = appendText(b, s.Reason)
	b = append(b, '|')
	if s.overflow {
		b = append(b, '*')
	}
	var prev uint64
	for i, q := range s.earlier {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, q-prev, 36)
		prev = q
	}
	b = append(b, '|')
	for i := range s.Steps {
		st := &s.Steps[i]
		if i > 0 {
			b = append(b, ';')
		}
		b = append(b, st.Name...)
		b = append(b, ',')
		b = appendNum(b, st.Position)
		b = append(b, ',', kindCode[st.Kind], statusCode[st.Status])
		mark := len(b) // trailing empty fields are cut back to here
		for _, n := range [...]int{st.Attempts, st.Trigger, st.Done, st.CompensationAttempts} {
			b = append(b, ',')
			b = appendNum(b, n)
			if n != 0 {
				mark = len(b)
			}
		}
		for _, t := range [...]time.Time{st.StartedAt, st.EndedAt, st.CompensatedAt} {
			b = append(b, ',')
			b = appendTime(b, t, s.StartedAt)
			if !t.IsZero() {
				mark = len(b)
			}
		}
		for _, e := range [...]string{st.Error, st.CompensationError} {
			b = append(b, ',')
			b = appendText(b, e)
			if e != "" {
				mark = len(b)
			}
		}
		b = append(b, ',')
		b = appendTime(b, st.WaitUntil, s.StartedAt)
		if !st.WaitUntil.IsZero() {
			mark = len(b)
		}
		b = append(b, ',')
		b = appendText(b, st.WaitingOn)
		if st.WaitingOn != "" {
			mark = len(b)
		}
		if st.Held {
			b = append(b, ",h"...)
			mark = len(b)
		}
		b = b[:mark]
	}
	return appendTrailing(b, s)
}

// scanner reads separated fields of a state without copying, and keeps
// the first error.
type scanner struct {
	s   string
	err error
}

// next returns the field up to sep (or the end) and moves past it.
func (c *scanner) next(sep byte) string {
	i := strings.IndexByte(c.s, sep)
	if i < 0 {
		f := c.s
		c.s = ""
		return f
	}
	f := c.s[:i]
	c.s = c.s[i+1:]
	return f
}

func (c *scanner) fail(format string, args ...any) {
	if c.err == nil {
		c.err = bad("malformed choreo-state: "+format, args...)
	}
}

func (c *scanner) int(f string) int {
	if f == "" {
		return 0
	}
	n := 0
	for i := 0; i < len(f); i++ {
		d := f[i] - '0'
		if d > 9 || n > 1<<40 {
			c.fail("bad number %q", f)
			return 0
		}
		n = n*10 + int(d)
	}
	return n
}

func (c *scanner) time(f string, base time.Time) time.Time {
	if f == "" {
		return time.Time{}
	}
	n, err := strconv.ParseInt(f, 36, 64)
	if err != nil {
		c.fail("bad time %q", f)
	}
	return base.Add(time.Duration(n) * timeUnit)
}

func (c *scanner) text(f string) string {
	if !strings.ContainsAny(f, "%+") {
		return f
	}
	v, err := url.QueryUnescape(f)
	if err != nil {
		c.fail("bad text %q", f)
	}
	return v
}

// decodeState parses a state for saga id of flow. It never panics; every
// error is a badInput.
func decodeState(flow, id, raw string) (*State, error) {
	raw, traceID, scheduled, parent, paused, err := cutTrailing(raw)
	if err != nil {
		return nil, err
	}
	c := scanner{s: raw}
	if c.next('|') != codecVersion || strings.Count(raw, "|") != 11 {
		return nil, bad("malformed choreo-state: want %s with 12 fields", codecVersion)
	}
	s := &State{Flow: flow, ID: id, TraceID: traceID, Parent: parent, Paused: paused}
	s.Version = c.int(c.next('|'))
	if st := c.next('|'); len(st) == 1 && sagaStatus[st[0]] != "" {
		s.Status = sagaStatus[st[0]]
	} else {
		c.fail("unknown status %q", st)
	}
	s.Events = c.int(c.next('|'))
	s.Epoch = c.int(c.next('|'))
	start, err := strconv.ParseInt(c.next('|'), 36, 64)
	if err != nil {
		return nil, bad("malformed choreo-state: bad start")
	}
	base := time.UnixMicro(start).UTC()
	s.StartedAt = base
	if s.Scheduled = c.time(scheduled, base); scheduled != "" && !s.Scheduled.After(base) {
		c.fail("scheduled time %q not after the start", scheduled)
	}
	s.UpdatedAt = c.time(c.next('|'), base)
	s.EndedAt = c.time(c.next('|'), base)
	s.Deadline = c.time(c.next('|'), base)
	s.Reason = c.text(c.next('|'))
	if seqs := c.next('|'); seqs == "*" {
		s.overflow = true
	} else if seqs != "" {
		s.earlier = make([]uint64, 0, strings.Count(seqs, ",")+1)
		var prev uint64
		for seqs != "" {
			f, rest, _ := strings.Cut(seqs, ",")
			n, err := strconv.ParseUint(f, 36, 64)
			if err != nil || (len(s.earlier) > 0 && n == 0) {
				return nil, bad("malformed choreo-state: bad sequence %q", f)
			}
			prev += n
			s.earlier = append(s.earlier, prev)
			seqs = rest
		}
	}
	if c.s != "" {
		if c.s[len(c.s)-1] == ';' {
			return nil, bad("malformed choreo-state: empty step record")
		}
		s.Steps = make([]StepState, 0, strings.Count(c.s, ";")+1)
	}
	for c.s != "" && c.err == nil {
		rec := scanner{s: c.next(';')}
		st := StepState{Name: rec.next(',')}
		st.Position = rec.int(rec.next(','))
		ks := rec.next(',')
		if len(ks) != 2 || kindOf[ks[0]] == "" || statusOf[ks[1]] == "" || !wire.Token(st.Name) {
			c.fail("bad step %q", st.Name)
			break
		}
		st.Kind, st.Status = kindOf[ks[0]], statusOf[ks[1]]
		st.Attempts = rec.int(rec.next(','))
		st.Trigger = rec.int(rec.next(','))
		st.Done = rec.int(rec.next(','))
		st.CompensationAttempts = rec.int(rec.next(','))
		st.StartedAt = rec.time(rec.next(','), base)
		st.EndedAt = rec.time(rec.next(','), base)
		st.CompensatedAt = rec.time(rec.next(','), base)
		st.Error = rec.text(rec.next(','))
		st.CompensationError = rec.text(rec.next(','))
		st.WaitUntil = rec.time(rec.next(','), base)
		st.WaitingOn = rec.text(rec.next(','))
		if rec.s != "" {
			if f := rec.next(','); f == "h" {
				st.Held = true
			} else {
				rec.fail("step %q has a bad held field %q", st.Name, f)
			}
		}
		if rec.s != "" {
			rec.fail("step %q has too many fields", st.Name)
		}
		if rec.err != nil && c.err == nil {
			c.err = rec.err
		}
		s.Steps = append(s.Steps, st)
	}
	if c.err != nil {
		return nil, c.err
	}
	if s.Version < 1 || s.Events < 1 {
		return nil, bad("malformed choreo-state: version and events must be positive")
	}
	return s, nil
}

// appendTrailing ends an encoded state with its optional saga-level
// fields: the trace id, if the saga has one, when a scheduled saga
// begins, and the parent of a child saga (the fields before the last one
// left empty when there are none).
func appendTrailing(b []byte, s *State) []byte {
	if s.TraceID == "" && s.Scheduled.IsZero() && s.Parent == nil && s.Paused == nil {
		return b
	}
	b = append(b, '|')
	b = append(b, s.TraceID...)
	if !s.Scheduled.IsZero() || s.Parent != nil || s.Paused != nil {
		b = append(b, '|')
		b = appendTime(b, s.Scheduled, s.StartedAt)
	}
	if s.Parent != nil || s.Paused != nil {
		b = append(b, '|')
		if p := s.Parent; p != nil {
			b = appendText(b, p.Flow+"."+p.ID+"."+p.Step)
		}
	}
	if p := s.Paused; p != nil {
		// who, when (Unix microseconds, base 36), the bulk act and why,
		// joined by ' ' before escaping: the name and bulk id are tokens.
		b = append(b, '|')
		b = appendText(b, p.By+" "+strconv.FormatInt(p.At.UnixMicro(), 36)+" "+p.Bulk+" "+p.Reason)
	}
	return b
}

// parsePaused reads the paused field of a state (appendTrailing); nil
// when it is not one.
func parsePaused(f string) *Audit {
	if strings.ContainsAny(f, "%+") {
		v, err := url.QueryUnescape(f)
		if err != nil {
			return nil
		}
		f = v
	}
	parts := strings.SplitN(f, " ", 4)
	if len(parts) != 4 || parts[0] == "" || !wire.IDChars(parts[0]) || !wire.IDChars(parts[2]) {
		return nil
	}
	at, err := strconv.ParseInt(parts[1], 36, 64)
	if err != nil {
		return nil
	}
	return &Audit{By: parts[0], At: time.UnixMicro(at).UTC(), Bulk: parts[2], Reason: parts[3]}
}

// cutTrailing splits the optional saga-level fields off an encoded state:
// it has 12 fields without them, 13 with a trace id, 14 with when a
// scheduled saga begins, 15 with a parent; a field before the last one
// there may be empty. The scheduled time is returned as its raw field,
// read against the start.
func cutTrailing(raw string) (rest, traceID, scheduled string, parent *ParentRef, paused *Audit, err error) {
	n := strings.Count(raw, "|") - 11 // trailing fields
	if n <= 0 {
		return raw, "", "", nil, nil, nil
	}
	if n > 4 {
		return "", "", "", nil, nil, bad("malformed choreo-state: %d fields", n+12)
	}
	var fields [4]string
	for k := n; k > 0; k-- {
		i := strings.LastIndexByte(raw, '|')
		fields[k-1] = raw[i+1:]
		raw = raw[:i]
	}
	traceID, scheduled = fields[0], fields[1]
	switch {
	case fields[n-1] == "":
		return "", "", "", nil, nil, bad("malformed choreo-state: empty last field")
	case traceID != "" && !validTraceID(traceID):
		return "", "", "", nil, nil, bad("malformed choreo-state: bad trace id %q", traceID)
	}
	if n >= 3 && fields[2] != "" {
		if parent = parseParent(fields[2]); parent == nil {
			return "", "", "", nil, nil, bad("malformed choreo-state: bad parent %q", fields[2])
		}
	}
	if n == 4 {
		if paused = parsePaused(fields[3]); paused == nil {
			return "", "", "", nil, nil, bad("malformed choreo-state: bad paused field %q", fields[3])
		}
	}
	return raw, traceID, scheduled, parent, paused, nil
}

// parseParent reads the parent field of a state: <flow>.<id>.<step>, each
// part a token (the id one of ValidID), possibly query-escaped; nil when
// it is not one.
func parseParent(f string) *ParentRef {
	if strings.ContainsAny(f, "%+") {
		v, err := url.QueryUnescape(f)
		if err != nil {
			return nil
		}
		f = v
	}
	t, ok := wire.Tokens(f, 3)
	if !ok || !wire.Token(t[0]) || !ValidID(t[1]) || !wire.Token(t[2]) {
		return nil
	}
	return &ParentRef{Flow: t[0], ID: t[1], Step: t[2]}
}

// validTraceID reports whether id is a W3C trace id: 32 lowercase hex
// digits, not all zero.
func validTraceID(id string) bool {
	t, err := trace.TraceIDFromHex(id)
	return err == nil && t.IsValid() && t.String() == id
}
