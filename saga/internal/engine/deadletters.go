package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// ErrNotReplayable is returned by ReplayDeadLetter for a dead letter that
// cannot be processed now, with the reason.
var ErrNotReplayable = errors.New("saga: dead letter not replayable")

// ReplayDeadLetter sends the dead letter at sequence seq back where it was
// read, only when it can be processed now, and says what it did:
//
//   - a compensation command of a saga parked as compensation_failed:
//     the saga's failed compensations run again (RetryCompensation);
//   - a timer that reads well now (a limit raised since, say): the timer
//     the broker stored where the dead letter says it was read (read back
//     from the timer stream, never the dead letter's copy, which its writer
//     could have made up) is published to its subject again, with a fresh
//     id;
//   - a saga log event: never. The log is the saga's state: an event that
//     was refused (malformed, forged, rogue) must not stand, and choreo
//     appends only with compare-and-set.
//
// Anything else, or a dead letter whose saga moved on, returns
// ErrNotReplayable with the reason. The dead letter is kept either way
// (PurgeDeadLetters removes old ones).
func (c *Client) ReplayDeadLetter(ctx context.Context, seq uint64) (string, error) {
	d, err := c.DeadLetterAt(ctx, seq)
	if err != nil {
		return "", err
	}
	subject := d.Subject
	switch {
	case strings.HasPrefix(subject, wire.Log):
		return "", fmt.Errorf("%w: %s is a saga log event: a refused event never stands (the saga's state is its log)", ErrNotReplayable, subject)
	case strings.HasPrefix(subject, wire.Cmd):
		env, err := parseEnvelope(subject, d.Header, d.Data, c.opts.maxEventSize)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrNotReplayable, subject, err)
		}
		err = c.RetryCompensation(ctx, Named(env.flow), env.id)
		if errors.Is(err, ErrNotParked) {
			st, gerr := c.Get(ctx, Named(env.flow), env.id)
			if gerr != nil {
				return "", fmt.Errorf("%w: saga %s/%s: %v", ErrNotReplayable, env.flow, env.id, gerr)
			}
			return "", fmt.Errorf("%w: saga %s/%s is %s, not parked: its compensation needs no replay", ErrNotReplayable, env.flow, env.id, st.Status)
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("saga %s/%s compensates again (its failed compensations retried)", env.flow, env.id), nil
	case strings.HasPrefix(subject, wire.Timer):
		// What a dead letter says is its writer's word, and any participant
		// may write one: republish only the timer the broker stored where
		// the dead letter says it was read, never the copy.
		stored, err := c.storedTimer(ctx, d)
		if err != nil {
			return "", err
		}
		if _, err := parseEnvelope(subject, stored.Header, stored.Data, c.opts.maxEventSize); err != nil {
			return "", fmt.Errorf("%w: %s still cannot be read: %v", ErrNotReplayable, subject, err)
		}
		m := nats.NewMsg(subject)
		for k, vs := range stored.Header {
			if strings.HasPrefix(strings.ToLower(k), "nats-") {
				continue
			}
			m.Header[k] = vs
		}
		m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("replay.%d.%d", seq, time.Now().UnixNano()))
		m.Data = stored.Data
		if _, err := c.j.send(ctx, m); err != nil {
			return "", fmt.Errorf("saga: replay %d: %w", seq, err)
		}
		return "timer published again on " + subject, nil
	}
	return "", fmt.Errorf("%w: %q is not a subject choreo reads", ErrNotReplayable, subject)
}

// storedTimer reads back, from the timer stream, the timer a dead letter
// says it copies: the message at its Choreo-Dlq-Sequence, which must be on
// its subject. A dead letter that names none, or a message on another
// subject, is not replayable: it was planted, or the timer is gone.
func (c *Client) storedTimer(ctx context.Context, d *DeadLetter) (*jetstream.RawStreamMsg, error) {
	seq, err := strconv.ParseUint(d.Header.Get(wire.DeadSequence), 10, 64)
	if err != nil || seq == 0 {
		return nil, fmt.Errorf("%w: dead letter %d (written by %s) names no sequence of %s: nothing stored to replay", ErrNotReplayable, d.Sequence, writerName(d.Writer), TimerStream)
	}
	gctx, cancel := withTimeout(ctx)
	defer cancel()
	m, err := c.j.timers.GetMsg(gctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: %s holds no message %d any more: nothing stored to replay", ErrNotReplayable, TimerStream, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("saga: read back timer %d: %w", seq, err)
	}
	if m.Subject != d.Subject {
		return nil, fmt.Errorf("%w: dead letter %d (written by %s) says %s, but %s holds %s at %d: not replayed", ErrNotReplayable, d.Sequence, writerName(d.Writer), d.Subject, TimerStream, m.Subject, seq)
	}
	return m, nil
}

// writerName is a dead letter's writer in words.
func writerName(w string) string {
	switch w {
	case "":
		return "an unknown identity"
	case wire.Unnamed:
		return "an identity without a name"
	}
	return w
}

// DeadLetterAt reads the dead letter at sequence seq of the dead-letter
// stream; ErrNotFound when there is none.
func (c *Client) DeadLetterAt(ctx context.Context, seq uint64) (*DeadLetter, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	m, err := c.j.dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: no dead letter %d", ErrNotFound, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("saga: dead letter %d: %w", seq, err)
	}
	d := deadLetterOf(seq, m.Subject, m.Header, m.Data)
	c.openDead(&d)
	return &d, nil
}

// openDead opens what a dead letter holds sealed (crypt.go): the texts of its
// reason and its payload, with this client's key ring. A payload it cannot
// open is left out, and Encrypted says so.
func (c *Client) openDead(d *DeadLetter) {
	if t := strings.SplitN(d.Subject, ".", 5); len(t) == 5 && t[0] == "choreo" {
		d.Reason = openText(c.opts.ring, t[2], t[3], d.Reason)
	}
	if keyOf(d.Header) == "" {
		return
	}
	plain, err := openData(c.opts.ring, d.Header, d.Subject, d.Data)
	if err != nil {
		d.Data, d.Encrypted = nil, true
		return
	}
	d.Data = plain
}

// deadLetterOf reads a dead letter's subject (its writer) and headers.
func deadLetterOf(seq uint64, subject string, h nats.Header, data []byte) DeadLetter {
	d := DeadLetter{Sequence: seq, Subject: h.Get(wire.DeadSubject), Reason: h.Get(wire.DeadReason), Consumer: h.Get(wire.DeadConsumer), Header: h, Data: data, Size: len(data)}
	if n, err := strconv.Atoi(h.Get(wire.DeadSize)); err == nil && n >= len(data) {
		d.Size = n // the original's; Data is its start
	}
	if t, ok := wire.Tokens(subject, 4); ok && (t[3] == wire.Unnamed || wire.Token(t[3])) {
		d.Writer = t[3]
	}
	d.Time, _ = time.Parse(time.RFC3339Nano, h.Get(wire.DeadTime))
	return d
}

// PurgeDeadLetters removes the dead letters stored before the given time
// and returns how many there were. It needs an identity that may purge the
// dead-letter stream (an admin: Permissions gives services no such right).
func (c *Client) PurgeDeadLetters(ctx context.Context, before time.Time) (uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	info, err := c.j.dlq.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("saga: dead letters: %w", err)
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	// The first dead letter at or after the time: everything before it goes.
	cut := info.State.LastSeq + 1
	req := []byte(`{"start_time":` + strconv.Quote(before.UTC().Format(time.RFC3339Nano)) + `}`)
	resp, err := c.j.nc.RequestWithContext(ctx, c.j.api+"DIRECT.GET."+DeadLetterStream, req)
	if err != nil {
		return 0, fmt.Errorf("saga: dead letters: %w", err)
	}
	switch st := resp.Header.Get("Status"); st {
	case "":
		if cut, err = strconv.ParseUint(lastValue(resp.Header, jetstream.SequenceHeader), 10, 64); err != nil {
			return 0, fmt.Errorf("saga: dead letters: bad sequence header")
		}
	case "404": // none at or after it: all go
	default:
		return 0, fmt.Errorf("saga: dead letters: status %s %s", st, resp.Header.Get("Description"))
	}
	n := uint64(0)
	if cut > info.State.FirstSeq {
		n = cut - info.State.FirstSeq
	}
	if n == 0 {
		return 0, nil
	}
	if err := c.j.dlq.Purge(ctx, jetstream.WithPurgeSequence(cut)); err != nil {
		return 0, fmt.Errorf("saga: purge dead letters: %w", err)
	}
	return n, nil
}

// RetryCompensation is the operator's retry of a saga parked as
// compensation_failed: its failed compensations run again with a fresh
// retry budget. It returns ErrNotFound or ErrNotParked.
func (c *Client) RetryCompensation(ctx context.Context, f FlowRef, id string) error {
	return c.retryCompensation(ctx, f, id, "", "")
}

// retryCompensation is RetryCompensation with the reason and bulk act
// its audit (the event's payload) records.
func (c *Client) retryCompensation(ctx context.Context, f FlowRef, id, reason, bulk string) error {
	_, err := c.operatorAct(ctx, f, id, PhaseResume, c.audit(reason, bulk), func(s *State, _ time.Time) error { return s.retryParked() })
	return err
}

// DeadLetter is a message choreo could not process.
type DeadLetter struct {
	Sequence uint64 // in the dead-letter stream
	Subject  string // where the message was read
	Reason   string // why it could not be processed
	Consumer string // the consumer it was read from, as the writer says
	// Writer is the identity that wrote the dead letter, as the broker
	// enforces it (the last token of its subject, which only that identity
	// may publish to): "_" for an identity without a name (an admin, an
	// unauthenticated client), "" for a dead letter of no known writer.
	// Everything else in a dead letter is what its writer says.
	Writer string
	Time   time.Time   // when it was dead-lettered
	Header nats.Header // the original headers, less the broker's
	Data   []byte      // the payload; only its start from LatestDeadLetters
	Size   int         // the payload's size in bytes
	// Encrypted says the payload is sealed with a key this client was not
	// given (WithKeyRing): Data is left out.
	Encrypted bool
}

// DeadLetters returns what was dead-lettered for flow f, oldest first; with
// f nil, every flow's (including messages whose flow was unreadable).
func (c *Client) DeadLetters(ctx context.Context, f FlowRef) ([]DeadLetter, error) {
	filters := []string{wire.Dead + ">"}
	if f != nil {
		filters = []string{wire.Dead + flowName(f), wire.DeadLetterSubject(flowName(f), "*")}
	}
	var out []DeadLetter
	err := c.j.scan(ctx, wire.DeadLetterStream, jetstream.OrderedConsumerConfig{FilterSubjects: filters}, func(m jetstream.Msg) {
		h := m.Headers()
		var seq uint64
		if md, _ := m.Metadata(); md != nil {
			seq = md.Sequence.Stream
		}
		d := deadLetterOf(seq, m.Subject(), h, slices.Clone(m.Data()))
		c.openDead(&d)
		out = append(out, d)
	})
	if err != nil {
		return nil, fmt.Errorf("saga: dead letters: %w", err)
	}
	return out, nil
}

// LatestDeadLetters returns the newest dead letters of every flow, at most
// n, oldest first, each with the first dataMax bytes of its payload in Data
// (Size says how big it is), and how many the stream holds: what a page
// that lists them needs, in memory bounded by n and dataMax however many
// and however big they are (any participant may dead-letter its flow's
// messages).
func (c *Client) LatestDeadLetters(ctx context.Context, n, dataMax int) ([]DeadLetter, uint64, error) {
	if n < 1 || dataMax < 0 {
		return nil, 0, fmt.Errorf("%w: want at least 1 dead letter and a data size from 0", ErrInvalidOption)
	}
	ictx, cancel := withTimeout(ctx)
	info, err := c.j.dlq.Info(ictx)
	cancel()
	if err != nil {
		return nil, 0, fmt.Errorf("saga: dead letters: %w", err)
	}
	st := info.State
	if st.Msgs == 0 {
		return nil, 0, nil
	}
	from := st.FirstSeq
	if st.LastSeq >= uint64(n) && st.LastSeq-uint64(n)+1 > from {
		from = st.LastSeq - uint64(n) + 1
	}
	var out []DeadLetter
	err = c.j.scan(ctx, wire.DeadLetterStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.Dead + ">"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	}, func(m jetstream.Msg) {
		var seq uint64
		if md, _ := m.Metadata(); md != nil {
			seq = md.Sequence.Stream
		}
		if seq > st.LastSeq || len(out) == n {
			return // dead-lettered since the count
		}
		data := m.Data()
		d := deadLetterOf(seq, m.Subject(), m.Headers(), data)
		c.openDead(&d)
		d.Data = slices.Clone(d.Data[:min(len(d.Data), dataMax)])
		out = append(out, d)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("saga: dead letters: %w", err)
	}
	return out, st.Msgs, nil
}
