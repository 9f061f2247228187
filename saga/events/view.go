package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ViewConsumers is how many consumers of the event stream a reader's
// identity may hold at once (ReadAccess): each instance of a read model
// holds one while it follows the stream, and one more while it rebuilds.
const ViewConsumers = 16

// viewInactivity is how long the broker keeps a view consumer whose
// reader vanished without deleting it (a crash): its slot is free again
// after that.
const viewInactivity = 2 * time.Minute

// ViewConsumer names the i-th consumer of the event stream that reader's
// identity may create (0 <= i < ViewConsumers): view_<reader>_<i>. No
// other consumer of the stream can have such a name: a group's consumers
// are <group>__<topic> (ConsumerName: always a double underscore, which a
// reader's name may not have) and a waiting step's <flow>_v<N>_<step>_on
// (ending in _on, where a view's name ends in a digit).
func ViewConsumer(reader string, i int) string {
	return "view_" + reader + "_" + strconv.Itoa(i)
}

// validReader reports whether reader may name view consumers: a name
// token without a double underscore, so that ViewConsumer can never name
// another group's consumer.
func validReader(reader string) bool {
	return reader != "" && !strings.Contains(reader, "__") && !strings.HasPrefix(reader, "_") &&
		!strings.HasSuffix(reader, "_") && !strings.ContainsAny(reader, ".*> \t\r\n")
}

// View is one read model's pass over the event stream, through a consumer
// of its reader's own (ViewConsumer): every event from a sequence on, in
// order, each once. Close deletes the consumer.
type View struct {
	js     jetstream.JetStream
	reader string
	cons   jetstream.Consumer
	it     jetstream.MessagesContext
	next   uint64 // the stream sequence of the next event
	cseq   uint64 // the consumer sequence of the last delivery
}

// OpenView starts reading the event stream from its first event, for
// reader (an identity with ReadAccess(reader)): it claims the first free
// one of reader's view consumers, so that several instances (and a
// rebuild beside the live view) each read every event.
func OpenView(ctx context.Context, js jetstream.JetStream, reader string) (*View, error) {
	if !validReader(reader) {
		return nil, fmt.Errorf("%w: reader %q", ErrInvalidOption, reader)
	}
	v := &View{js: js, reader: reader, next: 1}
	if err := v.open(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// open creates a view consumer from v.next on, in the first free slot.
func (v *View) open(ctx context.Context) error {
	tag := make([]byte, 8)
	_, _ = rand.Read(tag)
	cfg := jetstream.ConsumerConfig{
		// The description makes each claim's configuration its own, so
		// that creating a slot another instance holds fails (a create of
		// an identical configuration would share the consumer).
		Description:       "choreo: a read model of " + v.reader + " (" + hex.EncodeToString(tag) + ")",
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: viewInactivity,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if v.next > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, v.next
	}
	var last error
	for i := range ViewConsumers {
		cfg.Name = ViewConsumer(v.reader, i)
		cons, err := v.js.CreateConsumer(ctx, Stream, cfg)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			last = err
			continue
		}
		if err != nil {
			return fmt.Errorf("events: view consumer %s: %w", cfg.Name, err)
		}
		it, err := cons.Messages()
		if err != nil {
			v.drop(cons)
			return err
		}
		v.cons, v.it, v.cseq = cons, it, 0
		return nil
	}
	return fmt.Errorf("events: all %d view consumers of %s are taken: %w", ViewConsumers, v.reader, last)
}

// Pending is how many events the view had yet to read when it was opened.
func (v *View) Pending() uint64 {
	if info := v.cons.CachedInfo(); info != nil {
		return info.NumPending
	}
	return 0
}

// Next returns the next event, with how many are left after it. A lost
// delivery or a consumer that vanished (the broker restarted, say) is
// read again from a new consumer, as an ordered consumer would; it
// returns an error once ctx ends or after Close. Next and Close are for
// one goroutine: Close once Next returned.
func (v *View) Next(ctx context.Context) (jetstream.Msg, uint64, error) {
	for {
		m, err := v.it.Next(jetstream.NextContext(ctx))
		if err == nil {
			md, merr := m.Metadata()
			if merr != nil {
				err = merr
			} else if md.Sequence.Consumer != v.cseq+1 || md.Sequence.Stream < v.next {
				err = fmt.Errorf("events: view %s: delivery %d after %d", v.cons.CachedInfo().Name, md.Sequence.Consumer, v.cseq)
			} else {
				v.cseq, v.next = md.Sequence.Consumer, md.Sequence.Stream+1
				return m, md.NumPending, nil
			}
		}
		if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil, 0, errors.Join(ctx.Err(), err)
		}
		// Start again after the last event read, on a new consumer.
		v.it.Stop()
		v.drop(v.cons)
		for {
			select {
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
			octx, cancel := context.WithTimeout(ctx, 10*time.Second)
			oerr := v.open(octx)
			cancel()
			if oerr == nil {
				break
			}
		}
	}
}

// Close stops the view and deletes its consumer.
func (v *View) Close() {
	v.it.Stop()
	v.drop(v.cons)
}

func (v *View) drop(cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = v.js.DeleteConsumer(ctx, Stream, info.Name)
}
