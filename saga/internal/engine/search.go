package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/choreo-go/choreo/internal/wire"
	"github.com/choreo-go/choreo/saga/describe"
)

// attrBook says which search attributes each version of a flow declares:
// from the definitions compiled in, else from the flow registry (read at
// most once). An index entry is believed only when the saga's version
// declares its attribute, computed by the entry's source: the broker lets
// only that source's identity write it (access.Permissions), and a reader
// does not take a value from anyone else.
type attrBook struct {
	c    *Client
	flow string
	once bool
	regs map[int][]describe.Attr
}

func newAttrBook(c *Client, flow string) *attrBook {
	return &attrBook{c: c, flow: flow, regs: map[int][]describe.Attr{}}
}

// declared returns the attributes version declares; ok is false when no
// definition of the version is known.
func (b *attrBook) declared(ctx context.Context, version int) ([]describe.Attr, bool) {
	if f := b.c.j.def(b.flow, version); f != nil {
		return describeFlow(f).Attrs, true
	}
	b.readRegistry(ctx)
	a, ok := b.regs[version]
	return a, ok
}

func (b *attrBook) readRegistry(ctx context.Context) {
	if b.once {
		return
	}
	b.once = true
	regs, err := b.c.registered(ctx, b.flow)
	if err != nil {
		b.c.opts.logger.Debug("choreo: search: cannot read the flow registry", "flow", b.flow, "err", err)
		return
	}
	for _, r := range regs {
		if r.ok {
			b.regs[r.version] = r.def.Attrs
		}
	}
}

// known returns every attribute a version of the flow declares, by name:
// those compiled in, and those of the registry when one the conditions
// name is not among them.
func (b *attrBook) known(ctx context.Context, where []Cond) map[string]describe.Attr {
	out := map[string]describe.Attr{}
	add := func(attrs []describe.Attr) {
		for _, a := range attrs {
			out[a.Name] = a
		}
	}
	for _, f := range versions.all(b.flow) {
		add(describeFlow(f).Attrs)
	}
	b.c.j.defsMu.Lock()
	for _, f := range b.c.j.defs {
		if f.name == b.flow {
			add(describeFlow(f).Attrs)
		}
	}
	b.c.j.defsMu.Unlock()
	if slices.ContainsFunc(where, func(c Cond) bool { _, ok := out[c.Attr]; return !ok }) {
		b.readRegistry(ctx)
		for _, attrs := range b.regs {
			add(attrs)
		}
	}
	return out
}

// believe reports whether entry e of a saga on version stands.
func (b *attrBook) believe(ctx context.Context, version int, e indexEntry) bool {
	attrs, _ := b.declared(ctx, version)
	for _, a := range attrs {
		if a.Name == e.attr {
			src := a.Step
			if src == "" {
				src = wire.SagaStep
			}
			return src == e.source && (a.Kind == string(AttrNumber)) == e.number
		}
	}
	return false
}

// attrs returns what the believed entries of st say, by name. Two values
// of one attribute (a step whose result changed when an operator's retry
// ran it again) read as the least, so that every reader agrees.
func (b *attrBook) attrs(ctx context.Context, st *State, entries []indexEntry) map[string]string {
	var out map[string]string
	for _, e := range entries {
		if e.id != st.ID || !b.believe(ctx, st.Version, e) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		if old, ok := out[e.attr]; !ok || less(e.value, old, e.number) {
			out[e.attr] = e.value
		}
	}
	return out
}

func less(a, b string, number bool) bool {
	if number {
		x, _ := strconv.ParseFloat(a, 64)
		y, _ := strconv.ParseFloat(b, 64)
		return x < y
	}
	return a < b
}

// withAttrs sets v.Attrs from the search index: what Get shows. A flow
// version that declares none, or an index that cannot be read, leaves
// them unset.
func (c *Client) withAttrs(ctx context.Context, v *State) {
	if f := c.j.def(v.Flow, v.Version); (f != nil && len(f.attrs) == 0) || c.j.index == nil {
		return
	}
	entries, err := c.j.sagaIndex(ctx, v.Flow, v.ID)
	if err != nil {
		c.opts.logger.Debug("choreo: read a saga's search attributes", "flow", v.Flow, "saga", v.ID, "err", err)
		return
	}
	if len(entries) > 0 {
		v.Attrs = newAttrBook(c, v.Flow).attrs(ctx, v, entries)
	}
}

// findLoaders is how many sagas Find reads at once.
const findLoaders = 8

// Find returns the sagas of flow f that filter selects (Filter.Matches),
// oldest first. filter.Flow, when set, must name f. With conditions on
// search attributes (Where), the index gives the candidates: an equality
// reads the index subjects of its value only, any other condition the
// subject list of its attribute (names, no message); then each candidate
// saga is read, and kept when it stands and matches. At least one
// condition that is not "!=" is needed for that: otherwise (or with no
// condition) Find reads the flow's log as List does. Each saga found has
// Attrs set to the values its conditions read. It returns an error
// wrapping ErrInvalidOption for a condition on an attribute no known
// version of the flow declares, or with an operator ParseCond does not
// know, and ErrNotProvisioned when there is no index to read.
func (c *Client) Find(ctx context.Context, f FlowRef, filter Filter) ([]*State, error) {
	if f == nil || !wire.Token(flowName(f)) {
		return nil, fmt.Errorf("%w: bad flow name", ErrInvalidFlow)
	}
	flow := flowName(f)
	if filter.Flow != "" && filter.Flow != flow {
		return nil, fmt.Errorf("%w: filter of flow %q given for flow %q", ErrInvalidOption, filter.Flow, flow)
	}
	filter.Flow = flow
	c.j.defineRef(f)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	book := newAttrBook(c, flow)
	if len(filter.Where) > 0 {
		known := book.known(ctx, filter.Where)
		for _, cond := range filter.Where {
			if !slices.Contains(condOps, cond.Op) {
				return nil, fmt.Errorf("%w: condition %s: operator %q (want one of = != > >= < <=)", ErrInvalidOption, cond, cond.Op)
			}
			if _, ok := known[cond.Attr]; !ok {
				names := slices.Sorted(maps.Keys(known))
				return nil, fmt.Errorf("%w: condition %s: flow %s has no search attribute %q (it has %v)", ErrInvalidOption, cond, flow, cond.Attr, names)
			}
		}
	}
	entries, ids, narrowed, err := c.candidates(ctx, flow, filter.Where)
	if err != nil {
		return nil, err
	}
	var sts []*State
	if !narrowed {
		// No condition narrows the sagas: every saga of the flow.
		if sts, err = c.List(ctx, f); err != nil {
			return nil, err
		}
	} else if sts, err = c.loadAll(ctx, flow, ids); err != nil {
		return nil, err
	}
	var out []*State
	for _, st := range sts {
		attrs := book.attrs(ctx, st, entries[st.ID])
		if !filter.Matches(st, func(name string) (string, bool) { v, ok := attrs[name]; return v, ok }) {
			continue
		}
		st.Attrs = attrs
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b *State) int { return a.StartedAt.Compare(b.StartedAt) })
	return out, nil
}

// candidates reads the index for the conditions: the entries it read, by
// saga id, and the ids of the sagas every condition but "!=" may hold for
// (narrowed false: no condition narrows them, every saga is a candidate;
// then the entries are the whole index of the conditions' attributes).
func (c *Client) candidates(ctx context.Context, flow string, where []Cond) (entries map[string][]indexEntry, ids []string, narrowed bool, err error) {
	entries = map[string][]indexEntry{}
	read := func(filter string, keep func(indexEntry) bool) (map[string]bool, error) {
		subjects, err := c.j.indexSubjects(ctx, filter)
		if err != nil {
			return nil, err
		}
		found := map[string]bool{}
		for _, s := range subjects {
			e, bySaga, ok := parseIndexSubject(flow, s)
			if !ok || bySaga || (keep != nil && !keep(e)) {
				continue
			}
			entries[e.id] = append(entries[e.id], e)
			found[e.id] = true
		}
		return found, nil
	}
	var cand map[string]bool
	narrow := func(found map[string]bool) {
		if cand == nil {
			cand = found
			return
		}
		for id := range cand {
			if !found[id] {
				delete(cand, id)
			}
		}
	}
	attrOnly := map[string]bool{} // attributes read whole
	for _, cond := range where {
		if cond.Op == "!=" {
			continue
		}
		if cond.Op == "=" {
			// Only the subjects of the value: as text, and as a number.
			found := map[string]bool{}
			toks := []string{wire.IndexValueString(cutValue(cond.Value))}
			if n, err := strconv.ParseFloat(cond.Value, 64); err == nil {
				toks = append(toks, wire.IndexValueNumber(n))
			}
			for _, tok := range toks {
				got, err := read(wire.Index+flow+"."+cond.Attr+"."+tok+".*.*", nil)
				if err != nil {
					return nil, nil, false, err
				}
				maps.Copy(found, got)
			}
			narrow(found)
			continue
		}
		found, err := read(wire.Index+flow+"."+cond.Attr+".*.*.*", func(e indexEntry) bool { return cond.holds(e.value, true) })
		if err != nil {
			return nil, nil, false, err
		}
		attrOnly[cond.Attr] = true
		narrow(found)
	}
	for _, cond := range where {
		if cond.Op != "!=" || attrOnly[cond.Attr] {
			continue
		}
		// Every value of the attribute, to tell which sagas have another.
		if _, err := read(wire.Index+flow+"."+cond.Attr+".*.*.*", nil); err != nil {
			return nil, nil, false, err
		}
		attrOnly[cond.Attr] = true
	}
	if cand == nil {
		return entries, nil, false, nil
	}
	return entries, slices.Sorted(maps.Keys(cand)), true, nil
}

// loadAll reads the sagas of flow with the given ids, a few at a time;
// those that do not stand (an index entry whose start a crash left
// unwritten, a saga expired meanwhile) are left out.
func (c *Client) loadAll(ctx context.Context, flow string, ids []string) ([]*State, error) {
	out := make([]*State, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(findLoaders, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				st, _, err := c.j.load(ctx, flow, ids[i], 0)
				switch {
				case err == nil:
					out[i] = st.view()
				case !errors.Is(err, ErrNotFound):
					errs[i] = err
				}
			}
		}()
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("saga: find %s: %w", flow, err)
	}
	return slices.DeleteFunc(out, func(st *State) bool { return st == nil }), nil
}
