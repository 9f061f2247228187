package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/choreo-go/choreo/internal/wire"
)

// Child sagas. A step declared with RunsChild runs another flow as a
// child saga: its action starts the child, with the id ChildID gives and
// State.Parent naming the step, and waits (a step completed later). The
// child's end settles the step: the step's owner reads the child flow's
// log through a durable consumer of its own (wire.ChildEndConsumer) and,
// for a child whose Parent is the step, records the step's outcome with
// Settle: completed, the child's ChildResult; compensated (or parked as
// compensation_failed, left to an operator), the step fails and the
// parent compensates. When the parent compensates after the child
// completed, the step's compensation reverts the child (PhaseReverted):
// its own services compensate it, and the step's compensation is tried
// again until the child is compensated. A child still running is
// cancelled instead.

// ChildID is the id of the child saga that step of saga parentID runs:
// <parentID>-<step>, or, when that is longer than an id may be, its first
// 111 characters, '-' and 16 hex digits of its hash.
func ChildID(parentID, step string) string {
	id := parentID + "-" + step
	if len(id) <= 128 {
		return id
	}
	sum := sha256.Sum256([]byte(parentID + "." + step))
	return id[:111] + "-" + hex.EncodeToString(sum[:8])
}

// childResult is the result a step that runs a child saga records: the
// face's ChildResult.
type childResult struct {
	Flow    string `json:"flow"`
	Version int    `json:"version"`
	ID      string `json:"id"`
	Status  Status `json:"status"`
}

// childOutcome is what a child saga's end makes of its parent's step: a
// result when it completed, else a failure that compensates the parent
// (an Abort). It is nil, nil for a child not ended.
func childOutcome(st *State) ([]byte, error) {
	switch st.Status {
	case StatusCompleted:
		return json.Marshal(childResult{Flow: st.Flow, Version: st.Version, ID: st.ID, Status: st.Status})
	case StatusCompensated:
		return nil, Abortf("child saga %s/%s compensated: %s", st.Flow, st.ID, st.Reason)
	case StatusCompensationFailed:
		return nil, Abortf("child saga %s/%s is compensation_failed (an operator retries its compensation): %s", st.Flow, st.ID, st.Reason)
	}
	return nil, nil
}

// sameParent reports whether a saga's parent is p.
func sameParent(got *ParentRef, p ParentRef) bool { return got != nil && *got == p }

// errChildUndoing is what the compensation of a step that runs a child
// saga returns while the child compensates: the compensation is tried
// again (with its retry policy) until the child is compensated.
var errChildUndoing = errors.New("the child saga is compensating")

// BindChild binds step tmpl, declared with RunsChild, in runner r: its
// action starts the child saga and waits for its end, which r's consumer
// of the child flow's log records; its compensation reverts (or cancels)
// the child and completes once the child is compensated. It returns what
// Bind returns, and ErrInvalidOption for a step that runs no child.
func (r *Runner) BindChild(tmpl *StepDef) error {
	if !tmpl.Bound() {
		return fmt.Errorf("%w: step is not part of a defined flow", ErrInvalidFlow)
	}
	if tmpl.child == nil {
		return fmt.Errorf("%w: step %s runs no child flow", ErrInvalidOption, tmpl.name)
	}
	err := r.bind(tmpl, func(d *stepDef) *binding {
		b := &binding{action: r.childAction(d)}
		if d.kind == CompensatableStep {
			b.compensate = r.childUndo(d)
		}
		return b
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range tmpl.uses {
		r.j.define(d.child)
		known := false
		for _, e := range r.children {
			known = known || (e.child.name == d.child.name && e.parent == d.flow.name && e.step == d.name)
		}
		if !known {
			r.children = append(r.children, childEnd{child: d.child, parent: d.flow.name, step: d.name, tmpl: tmpl})
		}
	}
	return nil
}

// childAction is the action of step d, which runs a child saga: it starts
// the child (Start is idempotent, so a redelivery or a next attempt finds
// the same child) under the action's span, so that the child's spans are
// in the parent's trace, and waits for its end; a child that ended
// already (before an attempt that started it again) settles the step at
// once.
func (r *Runner) childAction(d *stepDef) func(ctx context.Context, in []byte) ([]byte, error) {
	return func(ctx context.Context, in []byte) ([]byte, error) {
		info, _ := InfoFrom(ctx)
		p := ParentRef{Flow: d.flow.name, ID: info.ID, Step: d.name}
		id := ChildID(info.ID, d.name)
		if err := r.c.open(ctx, d.child); err != nil {
			return nil, Abort(err)
		}
		if err := r.c.start(ctx, d.child, id, in, startOpts{parent: &p}); err != nil {
			if errors.Is(err, ErrInvalidInput) {
				return nil, Abort(err)
			}
			return nil, err
		}
		st, _, err := r.j.load(ctx, d.child.name, id, 0)
		if err != nil {
			return nil, err
		}
		if !sameParent(st.Parent, p) {
			return nil, Abortf("saga %s/%s exists and is not the child of %s", d.child.name, id, p)
		}
		if out, fail := childOutcome(openState(r.j.opts.ring, st)); out != nil || fail != nil {
			return out, fail
		}
		return nil, ErrLater
	}
}

// childUndo is the compensation of step d, which ran a child saga: a
// completed child is reverted, a running one cancelled, and the
// compensation is tried again until the child is compensated. A child
// that does not exist (never started) or is not the step's has nothing
// of the step's to undo.
func (r *Runner) childUndo(d *stepDef) func(ctx context.Context, in, out []byte) error {
	return func(ctx context.Context, _, _ []byte) error {
		info, _ := InfoFrom(ctx)
		p := ParentRef{Flow: d.flow.name, ID: info.ID, Step: d.name}
		return r.c.undoChild(ctx, d.child, ChildID(info.ID, d.name), p)
	}
}

// undoChild moves child saga id of flow child, whose parent is p, towards
// compensated, and returns nil once it is.
func (c *Client) undoChild(ctx context.Context, child *flowDef, id string, p ParentRef) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	cur, seq, err := c.j.load(ctx, child.name, id, 0)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return err
	case !sameParent(cur.Parent, p):
		return nil
	}
	var e entry
	switch cur.Status {
	case StatusCompensated:
		return nil
	case StatusCompensating:
		return fmt.Errorf("%w: %s/%s: %s", errChildUndoing, child.name, id, openText(c.opts.ring, child.name, id, cur.Reason))
	case StatusCompensationFailed:
		return fmt.Errorf("child saga %s/%s is compensation_failed: an operator retries its compensation (%s)", child.name, id, openText(c.opts.ring, child.name, id, cur.Reason))
	case StatusCompleted:
		e = entry{step: wire.SagaStep, phase: PhaseReverted, apply: func(s *State, _ time.Time) error { return s.revert() }}
	default:
		reason := "cancelled: its parent saga " + p.Flow + "/" + p.ID + " compensates"
		e = entry{step: wire.SagaStep, phase: PhaseCancelled, apply: func(s *State, _ time.Time) error { return s.cancel(reason) }}
	}
	st, _, err := c.j.appendDue(ctx, cur, seq, e)
	if errors.Is(err, errNoop) {
		return fmt.Errorf("%w: %s/%s moved on", errChildUndoing, child.name, id)
	}
	if err != nil {
		return err
	}
	if st.Status == StatusCompensated {
		return nil // it had nothing to compensate
	}
	return fmt.Errorf("%w: %s/%s", errChildUndoing, child.name, id)
}

// onChildEnd handles an event of the child flow's log for the consumer e:
// the end of a child saga whose parent is e's step settles that step.
func (r *Runner) onChildEnd(ctx context.Context, e childEnd, d *delivery) {
	st := d.ended(ctx)
	if st == nil {
		return
	}
	p := st.Parent
	if p == nil || p.Flow != e.parent || p.Step != e.step {
		_ = d.m.Ack() // not a child of this step
		return
	}
	if d.env.id != ChildID(p.ID, p.Step) {
		d.reject(ctx, fmt.Sprintf("saga %s names parent %s, whose child is %s", d.env.id, p, ChildID(p.ID, p.Step)))
		return
	}
	if !d.vouch(ctx) {
		return
	}
	par, _, err := r.j.load(ctx, p.Flow, p.ID, 0)
	if errors.Is(err, ErrNotFound) {
		_ = d.m.Ack()
		return
	}
	if err != nil {
		d.retryLater(err)
		return
	}
	s := par.Step(p.Step)
	switch {
	case s == nil:
		_ = d.m.Ack()
		return
	case s.Status == StepRunning:
		// Its action is under way (or its next attempt due): the action
		// reads the child's end itself once it started it, but may have
		// read it before it ended; so the end waits until the step waits.
		_ = d.m.NakWithDelay(time.Second)
		return
	case s.Status != StepWaiting:
		_ = d.m.Ack() // settled
		return
	}
	out, fail := childOutcome(openState(r.j.opts.ring, st)) // sealed again for the parent
	err = r.c.Settle(ctx, e.tmpl, TokenOf(par, p.Step), out, fail)
	switch {
	case err == nil, errors.Is(err, ErrNotWaiting), errors.Is(err, ErrCompensated), errors.Is(err, ErrWaitOver), errors.Is(err, ErrInvalidToken):
		_ = d.m.Ack()
	default:
		d.retryLater(err)
	}
}
