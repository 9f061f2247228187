package saga

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The state snapshot travels in a header of every saga event, and is read
// on every hop, so it has a compact text form rather than JSON (JSON cost a
// quarter of the runner's CPU in the benchmark, and its size the broker's):
//
//	c2|flow|id|version|status|events|epoch|started|updated|ended|deadline|reason|steps
//
// with steps joined by ';', each
//
//	name,position,kind,status,attempts,trigger,done,compAttempts,started,ended,compensated,error
//
// The saga's start is Unix microseconds in base 36; every other time is
// microseconds since the start, in base 36; an empty field is no time.
// Kinds and step statuses are one letter. Reason and error are
// query-escaped, so they hold no separator; the other fields are tokens.
const codecVersion = "c2"

// timeUnit is the precision of the times in a state.
const timeUnit = time.Microsecond

var (
	kindCode   = map[StepKind]byte{Compensatable: 'c', PivotStep: 'p', RetriableStep: 'r'}
	statusCode = map[StepStatus]byte{StepPending: 'p', StepRunning: 'r', StepCompleted: 'c', StepFailed: 'f',
		StepSkipped: 's', StepCompensated: 'x', StepCompensationFailed: 'X', StepUnknown: 't'}
	kindOf   = map[byte]StepKind{}
	statusOf = map[byte]StepStatus{}
)

func init() {
	for k, c := range kindCode {
		kindOf[c] = k
	}
	for k, c := range statusCode {
		statusOf[c] = k
	}
}

func appendTime(b []byte, t, base time.Time) []byte {
	if t.IsZero() {
		return b
	}
	return strconv.AppendInt(b, int64(t.Sub(base)/timeUnit), 36)
}

func encodeState(s *State) []byte {
	b := make([]byte, 0, 96+40*len(s.Steps))
	b = append(b, codecVersion...)
	b = append(b, '|')
	b = append(b, s.Flow...)
	b = append(b, '|')
	b = append(b, s.ID...)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(s.Version), 10)
	b = append(b, '|')
	b = append(b, s.Status...)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(s.Events), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(s.Epoch), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, s.StartedAt.UnixMicro(), 36)
	for _, t := range []time.Time{s.UpdatedAt, s.EndedAt, s.Deadline} {
		b = append(b, '|')
		b = appendTime(b, t, s.StartedAt)
	}
	b = append(b, '|')
	b = append(b, url.QueryEscape(s.Reason)...)
	b = append(b, '|')
	for i := range s.Steps {
		st := &s.Steps[i]
		if i > 0 {
			b = append(b, ';')
		}
		b = append(b, st.Name...)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(st.Position), 10)
		b = append(b, ',', kindCode[st.Kind], ',', statusCode[st.Status])
		for _, n := range []int{st.Attempts, st.Trigger, st.Done, st.CompensationAttempts} {
			b = append(b, ',')
			b = strconv.AppendInt(b, int64(n), 10)
		}
		for _, t := range []time.Time{st.StartedAt, st.EndedAt, st.CompensatedAt} {
			b = append(b, ',')
			b = appendTime(b, t, s.StartedAt)
		}
		b = append(b, ',')
		b = append(b, url.QueryEscape(st.Error)...)
	}
	return b
}

// decoder reads fields and keeps the first error.
type decoder struct{ err error }

func (d *decoder) int(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil && d.err == nil {
		d.err = bad("malformed choreo-state: bad number %q", s)
	}
	return n
}

func (d *decoder) time(s string, base time.Time) time.Time {
	if s == "" {
		return time.Time{}
	}
	n, err := strconv.ParseInt(s, 36, 64)
	if err != nil && d.err == nil {
		d.err = bad("malformed choreo-state: bad time %q", s)
	}
	return base.Add(time.Duration(n) * timeUnit)
}

func (d *decoder) text(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	v, err := url.QueryUnescape(s)
	if err != nil && d.err == nil {
		d.err = bad("malformed choreo-state: bad text %q", s)
	}
	return v
}

var validStatus = map[Status]bool{StatusRunning: true, StatusCompleted: true, StatusCompensating: true, StatusCompensated: true, StatusCompensationFailed: true}

// decodeState parses a snapshot. It never panics; every error is a
// badInput.
func decodeState(raw string) (*State, error) {
	f := strings.Split(raw, "|")
	if len(f) != 13 || f[0] != codecVersion {
		return nil, bad("malformed choreo-state: want %s with 13 fields", codecVersion)
	}
	var d decoder
	start, err := strconv.ParseInt(f[7], 36, 64)
	if err != nil {
		return nil, bad("malformed choreo-state: bad start %q", f[7])
	}
	base := time.UnixMicro(start).UTC()
	s := &State{
		Flow: f[1], ID: f[2], Version: d.int(f[3]), Status: Status(f[4]), Events: d.int(f[5]), Epoch: d.int(f[6]),
		StartedAt: base, UpdatedAt: d.time(f[8], base), EndedAt: d.time(f[9], base), Deadline: d.time(f[10], base),
		Reason: d.text(f[11]),
	}
	if !validStatus[s.Status] {
		return nil, bad("malformed choreo-state: unknown status %q", s.Status)
	}
	if f[12] != "" {
		recs := strings.Split(f[12], ";")
		s.Steps = make([]StepState, 0, len(recs))
		for _, rec := range recs {
			g := strings.Split(rec, ",")
			if len(g) != 12 || len(g[2]) != 1 || len(g[3]) != 1 {
				return nil, bad("malformed choreo-state: step record %q", rec)
			}
			kind, okK := kindOf[g[2][0]]
			status, okS := statusOf[g[3][0]]
			st := StepState{
				Name: g[0], Position: d.int(g[1]), Kind: kind, Status: status,
				Attempts: d.int(g[4]), Trigger: d.int(g[5]), Done: d.int(g[6]), CompensationAttempts: d.int(g[7]),
				StartedAt: d.time(g[8], base), EndedAt: d.time(g[9], base), CompensatedAt: d.time(g[10], base), Error: d.text(g[11]),
			}
			if !okK || !okS || st.Position < 0 {
				return nil, bad("malformed choreo-state: step %q", st.Name)
			}
			s.Steps = append(s.Steps, st)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}
