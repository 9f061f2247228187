package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// An operator pauses at two levels:
//
//   - a flow version, or one step of it (PauseStep): the broker pauses the
//     consumers of the step's action (its triggers, its own timer of a step
//     completed later, the domain events that complete it), so its
//     triggers wait in the broker, undelivered: no attempt is spent and
//     nothing is lost. The pause is recorded in the flow registry
//     (pause.<flow>.v<N>[.<step>]), and a runner that (re)creates the
//     consumer pauses it again from that record. Compensations, the saga's
//     timers (deadline, begin) and its end handlers are not paused.
//   - one saga (PauseSaga): an operator's event in its log; its runners
//     hold the actions triggered from then on (a held event, no attempt
//     spent), and the resume (ResumeSaga) runs them.

// farFuture is the PauseUntil of a pause with no end.
const farFuture = 100 * 365 * 24 * time.Hour

// who is this client's identity, as its connection's inbox prefix names
// it (access.InboxPrefix); "admin" for a connection without one (the
// admin's, or one to a server without authentication).
func (c *Client) who() string {
	if id := wire.IdentityOf(c.j.nc.Opts.InboxPrefix); id != wire.Unnamed {
		return id
	}
	return "admin"
}

// audit is the record of an act by this client now, for reason, within
// bulk act bulk ("" for none).
func (c *Client) audit(reason, bulk string) *Audit {
	return &Audit{By: c.who(), At: time.Now().UTC().Truncate(timeUnit), Reason: reason, Bulk: bulk}
}

func (a *Audit) data() []byte {
	b, _ := json.Marshal(a)
	return b
}

// operatorAct appends an operator's event on step _saga of the saga id of
// flow f, with the audit as its payload, and publishes what it makes due.
func (c *Client) operatorAct(ctx context.Context, f FlowRef, id string, phase Phase, a *Audit, apply transition) (*State, error) {
	if !validRef(f, id) {
		return nil, ErrNotFound
	}
	c.j.defineRef(f)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	cur, seq, err := c.j.load(ctx, flowName(f), id, 0)
	if err != nil {
		return nil, err
	}
	st, _, err := c.j.appendDue(ctx, cur, seq, entry{step: wire.SagaStep, phase: phase, data: a.data(), apply: apply})
	if errors.Is(err, errNoop) {
		return st, err
	}
	return st, err
}

// PauseSaga pauses one running (or scheduled) saga, with the reason: the
// actions triggered from now on are held (not run, no attempt spent)
// until ResumeSaga; a step already under way finishes, and so may one
// triggered less than its runner's ack wait before (a fresh trigger is
// judged by the state it carries, not read again). Its deadline
// keeps counting; a completion from outside (Settle) is still recorded,
// and what it triggers is held too. It returns ErrNotFound, ErrNotRunning
// for a saga that ended or compensates, or nil for one paused already.
// Only an identity that may append saga events of its own (an admin, or
// access.Operator) may pause.
func (c *Client) PauseSaga(ctx context.Context, f FlowRef, id, reason string) error {
	return c.pauseSaga(ctx, f, id, reason, "")
}

func (c *Client) pauseSaga(ctx context.Context, f FlowRef, id, reason, bulk string) error {
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%w: a pause needs a reason", ErrInvalidOption)
	}
	a := c.audit(reason, bulk)
	_, err := c.operatorAct(ctx, f, id, PhasePaused, a, func(s *State, _ time.Time) error { return s.pause(a) })
	if errors.Is(err, errNoop) {
		return nil
	}
	return err
}

// ResumeSaga takes back PauseSaga: the steps held meanwhile run, each
// with its timeout counted afresh. It returns ErrNotFound or ErrNotPaused.
func (c *Client) ResumeSaga(ctx context.Context, f FlowRef, id, reason string) error {
	return c.resumeSaga(ctx, f, id, reason, "")
}

func (c *Client) resumeSaga(ctx context.Context, f FlowRef, id, reason, bulk string) error {
	_, err := c.operatorAct(ctx, f, id, PhaseUnpaused, c.audit(reason, bulk), func(s *State, now time.Time) error { return s.unpause(now) })
	return err
}

// StepPause is a pause of a flow version, or of one step of it (PauseStep),
// as the flow registry records it.
type StepPause struct {
	Flow    string `json:"flow"`
	Version int    `json:"version"`
	Step    string `json:"step,omitempty"` // "" for the whole version
	Audit
	// Until is when the broker resumes the consumers by itself; zero for
	// a pause until ResumeStep.
	Until time.Time `json:"until,omitzero"`
}

// What is "flow vN" or "flow vN step s".
func (p StepPause) What() string {
	s := fmt.Sprintf("%s v%d", p.Flow, p.Version)
	if p.Step != "" {
		s += " step " + p.Step
	}
	return s
}

func pauseKey(flow string, version int, step string) string {
	k := "pause." + flow + "." + wire.Version(version)
	if step != "" {
		k += "." + step
	}
	return k
}

// stepConsumers are the consumers of step's action: the ones a step pause
// pauses.
func stepConsumers(flow string, version int, step string) []Consumer {
	return []Consumer{
		{wire.Stream, wire.DoConsumer(flow, version, step)},
		{wire.TimerStream, wire.WaitConsumer(flow, version, step)},
		{wire.EventStream, wire.EventConsumer(flow, version, step)},
	}
}

// PauseStep pauses a flow version's steps (step "") or one step of it,
// with the reason, until the given time (zero: until ResumeStep). Its
// triggers wait in the broker: nothing is lost and no attempt is spent. A
// step's timeout counts from its trigger, the pause included: a trigger
// that waited past it is recorded as timed out at resume (and its step
// compensated as unknown). A waiting step's timer fires into the paused
// consumer and waits there too. Compensations, the saga's deadline and
// its begin are not paused. The pause is recorded in the flow registry, so
// runners that start or restart meanwhile keep it. It returns
// ErrInvalidFlow for a bad name or version.
func (c *Client) PauseStep(ctx context.Context, f FlowRef, version int, step, reason string, until time.Time) error {
	if f == nil || !wire.Token(flowName(f)) || version < 1 || (step != "" && !wire.Token(step)) {
		return fmt.Errorf("%w: bad flow name, version or step", ErrInvalidFlow)
	}
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%w: a pause needs a reason", ErrInvalidOption)
	}
	flow := flowName(f)
	p := StepPause{Flow: flow, Version: version, Step: step, Audit: *c.audit(reason, ""), Until: until}
	value, _ := json.Marshal(p)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := c.reg.kv.Put(ctx, pauseKey(flow, version, step), value); err != nil {
		return fmt.Errorf("saga: pause %s: %w", p.What(), err)
	}
	return c.applyPause(ctx, flow, version, step, true)
}

// ResumeStep takes back PauseStep of the same flow version and step: the
// consumers resume where they stopped. A step stays paused while its
// version is (and the version's steps paused one by one stay so). It
// returns ErrNotPaused when no such pause is recorded.
func (c *Client) ResumeStep(ctx context.Context, f FlowRef, version int, step string) error {
	if f == nil || !wire.Token(flowName(f)) || version < 1 || (step != "" && !wire.Token(step)) {
		return fmt.Errorf("%w: bad flow name, version or step", ErrInvalidFlow)
	}
	flow := flowName(f)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := c.reg.kv.Get(ctx, pauseKey(flow, version, step)); errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: %s", ErrNotPaused, StepPause{Flow: flow, Version: version, Step: step}.What())
	}
	if err := c.reg.kv.Delete(ctx, pauseKey(flow, version, step)); err != nil {
		return fmt.Errorf("saga: resume %s v%d: %w", flow, version, err)
	}
	return c.applyPause(ctx, flow, version, step, false)
}

// applyPause sets the broker's pause of the consumers of step (every
// step of the version for "") to what the registry now records.
func (c *Client) applyPause(ctx context.Context, flow string, version int, step string, pause bool) error {
	steps := []string{step}
	if step == "" {
		steps = nil
		regs, err := c.registered(ctx, flow)
		if err != nil {
			return err
		}
		for _, r := range regs {
			if r.version == version && r.ok {
				for _, s := range r.def.Steps {
					steps = append(steps, s.Name)
				}
			}
		}
	}
	pauses, err := c.Pauses(ctx, flow)
	if err != nil {
		return err
	}
	for _, s := range steps {
		p, paused := pausedIn(pauses, flow, version, s)
		for _, cn := range stepConsumers(flow, version, s) {
			var err error
			if paused {
				_, err = c.j.js.PauseConsumer(ctx, cn.Stream, cn.Name, p.until())
			} else {
				_, err = c.j.js.ResumeConsumer(ctx, cn.Stream, cn.Name)
			}
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) && !streamMissing(err) {
				return fmt.Errorf("saga: pause consumer %s: %w", cn.Name, err)
			}
		}
	}
	return nil
}

// streamMissing reports whether err is the broker's "stream not found"
// (the domain events stream exists only where events are used).
func streamMissing(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound
}

func (p StepPause) until() time.Time {
	if p.Until.IsZero() {
		return p.At.Add(farFuture)
	}
	return p.Until
}

// pausedIn returns the pause that holds step of a flow version, among
// pauses: the step's own, or the version's.
func pausedIn(pauses []StepPause, flow string, version int, step string) (StepPause, bool) {
	var found *StepPause
	for i, p := range pauses {
		if p.Flow != flow || p.Version != version || (p.Step != "" && p.Step != step) {
			continue
		}
		if !p.Until.IsZero() && !time.Now().Before(p.Until) {
			continue // over
		}
		if found == nil || p.until().After(found.until()) {
			found = &pauses[i]
		}
	}
	if found == nil {
		return StepPause{}, false
	}
	return *found, true
}

// Pauses lists the pauses of flow's versions and steps the registry
// records ("" for every flow), by flow, version and step.
func (c *Client) Pauses(ctx context.Context, flow string) ([]StepPause, error) {
	filter := "pause.>"
	if flow != "" {
		filter = "pause." + flow + ".>"
	}
	entries, err := c.registryEntries(ctx, filter)
	if err != nil {
		return nil, err
	}
	var out []StepPause
	for _, v := range entries {
		var p StepPause
		if json.Unmarshal(v, &p) != nil || !wire.Token(p.Flow) || p.Version < 1 {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Flow != out[b].Flow {
			return out[a].Flow < out[b].Flow
		}
		if out[a].Version != out[b].Version {
			return out[a].Version < out[b].Version
		}
		return out[a].Step < out[b].Step
	})
	return out, nil
}

// stepPaused is the pause that holds a step of a flow version now, if
// any: what a runner applies to the consumers it creates.
func (c *Client) stepPaused(ctx context.Context, flow string, version int, step string) (StepPause, bool, error) {
	pauses, err := c.Pauses(ctx, flow)
	if err != nil {
		return StepPause{}, false, err
	}
	p, ok := pausedIn(pauses, flow, version, step)
	return p, ok, nil
}
