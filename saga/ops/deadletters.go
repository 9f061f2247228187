package ops

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/saga/internal/engine"
)

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
	// given (saga.WithKeyRing): Data is left out.
	Encrypted bool
}

func letters(ds []engine.DeadLetter) []DeadLetter {
	out := make([]DeadLetter, len(ds))
	for i, d := range ds {
		out[i] = DeadLetter(d)
	}
	return out
}

// DeadLetters returns what was dead-lettered for the flow, oldest first;
// with flow "", every flow's (including messages whose flow was
// unreadable).
func (c *Client) DeadLetters(ctx context.Context, flow string) ([]DeadLetter, error) {
	var f engine.FlowRef
	if flow != "" {
		f = engine.Named(flow)
	}
	ds, err := c.e.DeadLetters(ctx, f)
	return letters(ds), err
}

// LatestDeadLetters returns the newest dead letters, at most n, oldest
// first, each with the first dataMax bytes of its payload in Data (Size
// says how big it is), and how many the stream holds: what a page that
// lists them needs, in memory bounded by n and dataMax however many and
// however big they are.
func (c *Client) LatestDeadLetters(ctx context.Context, n, dataMax int) ([]DeadLetter, uint64, error) {
	ds, total, err := c.e.LatestDeadLetters(ctx, n, dataMax)
	return letters(ds), total, err
}

// DeadLetterAt reads the dead letter at sequence seq of the dead-letter
// stream; saga.ErrNotFound when there is none.
func (c *Client) DeadLetterAt(ctx context.Context, seq uint64) (*DeadLetter, error) {
	d, err := c.e.DeadLetterAt(ctx, seq)
	if err != nil {
		return nil, err
	}
	out := DeadLetter(*d)
	return &out, nil
}

// ReplayDeadLetter sends the dead letter at sequence seq back where it was
// read, only when it can be processed now, and says what it did:
//
//   - a compensation command of a saga parked as compensation_failed: the
//     saga's failed compensations run again (RetryCompensation);
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
	return c.e.ReplayDeadLetter(ctx, seq)
}

// PurgeDeadLetters removes the dead letters stored before the given time
// and returns how many there were. It needs an identity that may purge the
// dead-letter stream (the admin).
func (c *Client) PurgeDeadLetters(ctx context.Context, before time.Time) (uint64, error) {
	return c.e.PurgeDeadLetters(ctx, before)
}
