package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// The search index holds two messages without payload per attribute of a
// saga, in a stream of its own: one found by its value
// (wire.IndexSubject), one found by the saga (wire.IndexSagaSubject). An attribute is
// indexed before the event it is computed from is appended (the saga's
// start, the step's done): a saga is never in the log without its
// attributes, and an entry whose event a crash left unwritten names a
// saga that does not exist, or a step that has not completed: a lookup
// reads the saga of every entry it believes, and keeps only those that
// stand. An ended saga's expiry deletes its entries before its log.

// attrSubjects returns the index subjects of saga id of flow version f
// for the attributes computed from data: the saga's input (source "") or
// the result of step source. It fails when an attribute cannot be
// computed.
func attrSubjects(f *flowDef, id, source string, data []byte) ([]string, error) {
	var subjects []string
	for _, a := range f.attrsFrom(source) {
		tok, err := a.value(data)
		if err != nil {
			return nil, err
		}
		subjects = append(subjects, wire.IndexSubject(f.name, a.name, tok, id, a.source()), wire.IndexSagaSubject(f.name, id, a.name, tok, a.source()))
	}
	return subjects, nil
}

// putIndex writes one index entry on each subject, all at once, and
// waits for them all.
func (j *journal) putIndex(ctx context.Context, subjects []string) error {
	if len(subjects) == 0 {
		return nil
	}
	if j.index == nil {
		return fmt.Errorf("%w: stream %s does not exist, and the flow has search attributes: provision it (access.Provision)", ErrNotProvisioned, wire.IndexStream)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(subjects))
	for _, s := range subjects {
		// No message id: the stream keeps one message per subject, so an
		// entry written again replaces itself.
		f, err := j.pub.PublishMsgAsync(&nats.Msg{Subject: s})
		if err != nil {
			return fmt.Errorf("saga: index %s: %w", s, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("saga: index %s: %w", subjects[i], fullError(err))
		case <-ctx.Done():
			return fmt.Errorf("saga: index %s: %w", subjects[i], ctx.Err())
		}
	}
	return nil
}

// indexResult indexes the attributes of a step's result before e, the
// step's done event of saga cur, is appended. An attribute the result
// does not give is logged and left out: running the step again would not
// change its result.
func (j *journal) indexResult(ctx context.Context, cur *State, e entry) error {
	if !attrsDeclared.Load() {
		return nil
	}
	f := j.def(cur.Flow, cur.Version)
	if f == nil || len(f.attrs) == 0 || len(f.attrsFrom(e.step)) == 0 {
		return nil
	}
	var subjects []string
	for _, a := range f.attrsFrom(e.step) {
		tok, err := a.value(e.data)
		if err != nil {
			j.opts.logger.Warn("choreo: a step's result gives no search attribute", "flow", cur.Flow, "saga", cur.ID, "step", e.step, "err", err)
			continue
		}
		subjects = append(subjects, wire.IndexSubject(cur.Flow, a.name, tok, cur.ID, a.source()), wire.IndexSagaSubject(cur.Flow, cur.ID, a.name, tok, a.source()))
	}
	return j.putIndex(ctx, subjects)
}

// indexEntry is one index subject, read.
type indexEntry struct {
	attr, value, id, source string
	number                  bool
}

// parseIndexSubject reads an index subject of flow, of either kind; ok
// is false for anything else.
func parseIndexSubject(flow, subject string) (e indexEntry, bySaga, ok bool) {
	rest, ok := strings.CutPrefix(subject, wire.Index+flow+".")
	if !ok {
		return indexEntry{}, false, false
	}
	var tok string
	if rest, bySaga = strings.CutPrefix(rest, wire.IndexBySaga+"."); bySaga {
		t, ok := wire.Tokens(rest, 4)
		if !ok {
			return indexEntry{}, false, false
		}
		e.id, e.attr, tok, e.source = t[0], t[1], t[2], t[3]
	} else {
		t, ok := wire.Tokens(rest, 4)
		if !ok {
			return indexEntry{}, false, false
		}
		e.attr, tok, e.id, e.source = t[0], t[1], t[2], t[3]
	}
	if !wire.Token(e.attr) || !ValidID(e.id) {
		return indexEntry{}, false, false
	}
	if e.value, e.number, ok = wire.ParseIndexValue(tok); !ok {
		return indexEntry{}, false, false
	}
	return e, bySaga, true
}

// token is the entry's value as a subject token.
func (e indexEntry) token() string {
	if e.number {
		f, _ := strconv.ParseFloat(e.value, 64)
		return wire.IndexValueNumber(f)
	}
	return wire.IndexValueString(e.value)
}

// indexSubjects returns the index subjects matching filter: the stream's
// subject list, which the broker keeps, with no message read.
func (j *journal) indexSubjects(ctx context.Context, filter string) ([]string, error) {
	if j.index == nil {
		return nil, fmt.Errorf("%w: stream %s does not exist: is choreo provisioned on this server?", ErrNotProvisioned, wire.IndexStream)
	}
	info, err := j.index.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("saga: read the search index: %w", err)
	}
	out := make([]string, 0, len(info.State.Subjects))
	for s := range info.State.Subjects {
		out = append(out, s)
	}
	return out, nil
}

// sagaIndex returns the index entries of saga id of flow.
func (j *journal) sagaIndex(ctx context.Context, flow, id string) ([]indexEntry, error) {
	subjects, err := j.indexSubjects(ctx, wire.IndexSagaSubject(flow, id, "*", "*", "*"))
	if err != nil {
		return nil, err
	}
	var out []indexEntry
	for _, s := range subjects {
		if e, bySaga, ok := parseIndexSubject(flow, s); ok && bySaga && e.id == id {
			out = append(out, e)
		}
	}
	return out, nil
}

// unindex deletes the index entries of saga id of a flow version (its
// expiry), one by one, each found by its subject: those the saga's own
// entries name, and then those.
func (j *journal) unindex(ctx context.Context, flow string, version int, id string) error {
	if f := j.def(flow, version); (f != nil && len(f.attrs) == 0) || j.index == nil {
		return nil // nothing declared, or no index provisioned: nothing to delete
	}
	entries, err := j.sagaIndex(ctx, flow, id)
	if err != nil {
		return err
	}
	// Those found by value first: until the saga's own go, a retry finds
	// them again.
	var subjects []string
	for _, e := range entries {
		subjects = append(subjects, wire.IndexSubject(flow, e.attr, e.token(), id, e.source))
	}
	for _, e := range entries {
		subjects = append(subjects, wire.IndexSagaSubject(flow, id, e.attr, e.token(), e.source))
	}
	for _, s := range subjects {
		for {
			m, err := j.index.GetLastMsgForSubject(ctx, s)
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					break
				}
				return fmt.Errorf("read %s: %w", s, err)
			}
			if err := j.index.DeleteMsg(ctx, m.Sequence); !deleted(err) {
				return fmt.Errorf("delete %d: %w", m.Sequence, err)
			}
		}
	}
	return nil
}
