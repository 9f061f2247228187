package ops

import (
	"context"
	"time"

	"github.com/choreo-go/choreo/saga/internal/engine"
)

// ErrNotPaused is returned by ResumeSaga for a saga that is not paused,
// and by ResumeStep for a flow version or step that is not.
var ErrNotPaused = engine.ErrNotPaused

// Audit is who did an operator's act on a saga, when, why, and the bulk
// act it was part of: the payload of the operator's events in a saga's
// log (Timeline), and what saga.State.Paused says.
type Audit = engine.Audit

// StepPause is a pause of a flow version (Step "") or of one step of it,
// as the flow registry records it: who paused it, when, why, and until
// when (zero: until ResumeStep).
type StepPause = engine.StepPause

// PauseStep pauses a flow version's steps (step "") or one step of it,
// for the reason, until the given time (zero: until ResumeStep). The
// broker stops delivering the step's triggers (and its own timers and
// completing events): they wait there, nothing is lost and no attempt is
// spent. A step's timeout counts from its trigger, the pause included: a
// trigger that waited past it is recorded as timed out at resume, and the
// step is compensated as unknown. Compensations and the sagas' deadlines
// are not paused. The pause is recorded in the flow registry, so a runner
// that starts meanwhile keeps it. Only the admin identity (or one given
// access.Operator) may pause. It returns saga.ErrInvalidFlow or
// saga.ErrInvalidOption (no reason).
func (c *Client) PauseStep(ctx context.Context, flow string, version int, step, reason string, until time.Time) error {
	return c.e.PauseStep(ctx, engine.Named(flow), version, step, reason, until)
}

// ResumeStep takes back PauseStep of the same version and step: its
// triggers are delivered where they stopped. It returns ErrNotPaused.
func (c *Client) ResumeStep(ctx context.Context, flow string, version int, step string) error {
	return c.e.ResumeStep(ctx, engine.Named(flow), version, step)
}

// Pauses lists the pauses of flow versions and steps ("" for every
// flow's), by flow, version and step.
func (c *Client) Pauses(ctx context.Context, flow string) ([]StepPause, error) {
	return c.e.Pauses(ctx, flow)
}

// PauseSaga pauses one running saga, for the reason: an operator's event
// in its log. The actions triggered from then on are held, not run and no
// attempt spent (saga.StepState.Held); a step already under way finishes,
// and so may one triggered less than its runner's ack wait before the
// pause (a fresh trigger is judged by the state it carries, not read
// again). Compensations are not held. Its deadline keeps
// counting. It returns saga.ErrNotFound, ErrNotRunning (it ended or
// compensates), or nil for a saga paused already.
func (c *Client) PauseSaga(ctx context.Context, flow, id, reason string) error {
	return c.e.PauseSaga(ctx, engine.Named(flow), id, reason)
}

// ResumeSaga takes back PauseSaga: the steps held meanwhile run, each
// with its timeout counted afresh from the resume. It returns
// saga.ErrNotFound or ErrNotPaused.
func (c *Client) ResumeSaga(ctx context.Context, flow, id, reason string) error {
	return c.e.ResumeSaga(ctx, engine.Named(flow), id, reason)
}
