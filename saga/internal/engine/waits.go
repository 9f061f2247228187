package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-go/choreo/internal/wire"
)

// A step completed later (WaitsFor) is settled from outside its action:
// by Complete or Fail with its completion token, in any process with the
// step owner's identity.

// tokenOf is the completion token of an attempt of a step of a saga:
// <flow>.v<N>.<id>.<step>.<attempt>. It is a name, not a secret: the
// broker lets only the step owner's identity record the step's outcome.
func tokenOf(flow string, version int, id, step string, attempt int) string {
	return flow + "." + wire.Version(version) + "." + id + "." + step + "." + strconv.Itoa(attempt)
}

// tokenParts is what a completion token names.
type tokenParts struct {
	flow, id, step   string
	version, attempt int
}

func parseToken(tok string) (tokenParts, error) {
	t, ok := wire.Tokens(tok, 5)
	if !ok {
		return tokenParts{}, fmt.Errorf("%w: %q", ErrInvalidToken, tok)
	}
	v, vok := wire.ParseVersion(t[1])
	n, err := strconv.Atoi(t[4])
	if !vok || err != nil || n < 1 || !wire.Token(t[0]) || !ValidID(t[2]) || !wire.Token(t[3]) {
		return tokenParts{}, fmt.Errorf("%w: %q", ErrInvalidToken, tok)
	}
	return tokenParts{flow: t[0], version: v, id: t[2], step: t[3], attempt: n}, nil
}

// TokenOf returns the completion token of a step that waits in st, or ""
// when it does not wait.
func TokenOf(st *State, step string) string {
	s := st.Step(step)
	if s == nil || s.Status != StepWaiting {
		return ""
	}
	return tokenOf(st.Flow, st.Version, st.ID, step, s.Attempts)
}

// Settle records the outcome of the waiting attempt of step tmpl that
// token names: its result out when fail is nil; else a failure, which
// compensates the saga for Abort and runs the step again after its
// backoff for any other error (its retries counted as for an action).
// It returns ErrInvalidToken for a token of another step, ErrNotWaiting
// when the step does not wait for that attempt (decided already),
// ErrWaitOver after the wait timed out, ErrCompensated when the saga
// compensated the step first (the caller must undo the late effect), or
// the broker's error (a permission error for an identity other than the
// step owner's).
func (c *Client) Settle(ctx context.Context, tmpl *StepDef, token string, out []byte, fail error) error {
	k, err := parseToken(token)
	if err != nil {
		return err
	}
	var d *stepDef
	for _, u := range tmpl.uses {
		if u.flow.name == k.flow && u.flow.version == k.version && u.name == k.step {
			d = u
		}
	}
	if d == nil {
		return fmt.Errorf("%w: %q is not a token of step %s", ErrInvalidToken, token, tmpl.Name())
	}
	if fail == nil && len(out) > c.opts.maxEventSize-4096 {
		return fmt.Errorf("%w: result is %d bytes, limit %d", ErrInvalidInput, len(out), c.opts.maxEventSize-4096)
	}
	c.j.define(d.flow)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	cur, seq, err := c.j.load(ctx, k.flow, k.id, 0)
	if err != nil {
		return err
	}
	e := settleEntry(d, k.attempt, out, sealError(c.opts.ring, k.flow, k.id, fail))
	ctx, span := c.j.completionSpan(ctx, cur, d.name, e.phase)
	defer span.End()
	st, nseq, err := c.j.appendDue(ctx, cur, seq, e)
	// An answer can come before the action that asked for it has returned
	// and its wait is recorded (a fast callback): it waits for that, as
	// long as ctx lets it.
	for pause := 20 * time.Millisecond; errors.Is(err, errNoop) && inAction(st, d.name, k.attempt); pause = min(2*pause, time.Second) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: step %s of saga %s: the action of attempt %d has not returned yet: %w", ErrNotWaiting, d.name, k.id, k.attempt, ctx.Err())
		case <-time.After(pause):
		}
		if st, nseq, err = c.j.load(ctx, k.flow, k.id, nseq); err != nil {
			return err
		}
		st, nseq, err = c.j.appendDue(ctx, st, nseq, e)
	}
	if errors.Is(err, errNoop) {
		return whyNotWaiting(st, d.name, k.attempt, c.j.sagaTime())
	}
	if err != nil {
		return err
	}
	return c.j.armStep(ctx, st, d.name)
}

// completionSpan opens the span of a completion of step in the saga cur
// (a Settle, an event): a child of the span of the attempt that began
// waiting, whose context the waiting event carries, so that the saga stays
// one trace; the caller's own span, if any, is linked.
func (j *journal) completionSpan(ctx context.Context, cur *State, step string, phase Phase) (context.Context, trace.Span) {
	if j.untraced(ctx) {
		return ctx, trace.SpanFromContext(ctx)
	}
	parent := ctx
	var opts []trace.SpanStartOption
	if m, _, err := j.directLast(ctx, wire.LogSubject(cur.Flow, cur.ID, cur.Version, step, string(PhaseWaiting))); err == nil {
		if pctx, sc := extract(ctx, m.Header); sc.IsValid() {
			parent = pctx
			if caller := trace.SpanContextFromContext(ctx); caller.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: caller}))
			}
		}
	}
	opts = append(opts, trace.WithSpanKind(trace.SpanKindProducer))
	sctx, sp := j.opts.tracer.Start(parent, cur.Flow+"/"+step+" complete", opts...)
	if sp.IsRecording() {
		sp.SetAttributes(AttrFlow.String(cur.Flow), AttrVersion.Int(cur.Version), AttrSaga.String(cur.ID),
			AttrStep.String(step), AttrPhase.String(string(phase)))
	}
	return sctx, sp
}

// settleEntry is the log entry a completion appends: its transition
// applies only while the attempt waits and its wait has not timed out.
func settleEntry(d *stepDef, attempt int, out []byte, fail error) entry {
	waiting := func(s *State, now time.Time) error {
		st := s.Step(d.name)
		if st == nil || st.Status != StepWaiting || st.Attempts != attempt || !now.Before(st.WaitUntil) {
			return errNoop
		}
		return nil
	}
	var v verdict
	var e entry
	switch {
	case fail == nil:
		e = entry{step: d.name, phase: PhaseDone, data: out}
		v.apply = func(s *State, now time.Time) error { return s.complete(d.name, attempt, now) }
	case IsAbort(fail) && d.kind != RetriableStep:
		v = failVerdict(d, attempt, fail.Error())
		e = entry{step: d.name, phase: v.phase}
	default:
		policy := d.retry.withDefaults(5, 5*time.Second)
		if d.kind != RetriableStep && attempt >= policy.MaxAttempts {
			v = failVerdict(d, attempt, fmt.Sprintf("retries exhausted after %d attempts: %v", attempt, fail))
			if d.kind == CompensatableStep {
				v = unknownVerdict(d, attempt, fmt.Sprintf("retries exhausted after %d attempts: %v", attempt, fail))
			}
		} else {
			v = waitRetry(d, attempt, fail.Error(), policy.backoff(attempt))
		}
		e = entry{step: d.name, phase: v.phase}
	}
	apply := v.apply
	e.apply = func(s *State, now time.Time) error {
		if err := waiting(s, now); err != nil {
			return err
		}
		return apply(s, now)
	}
	return e
}

// inAction reports whether attempt of step is still in its action in st:
// the step runs and has recorded no outcome of that attempt yet.
func inAction(st *State, step string, attempt int) bool {
	s := st.Step(step)
	return s != nil && s.Status == StepRunning && s.WaitUntil.IsZero() && s.Attempts < attempt && st.Status == StatusRunning
}

// whyNotWaiting says why a completion of attempt of step did not apply to
// the saga's state st.
func whyNotWaiting(st *State, step string, attempt int, now time.Time) error {
	s := st.Step(step)
	switch {
	case s == nil:
		return fmt.Errorf("%w: saga %s has no step %s", ErrInvalidToken, st.ID, step)
	case s.Status == StepUnknown || s.Status == StepCompensated || s.Status == StepCompensating ||
		s.Status == StepCompensationFailed || s.Status == StepSkipped:
		return fmt.Errorf("%w: step %s of saga %s is %s (%s)", ErrCompensated, step, st.ID, s.Status, s.Error)
	case s.Status == StepWaiting && s.Attempts == attempt && !now.Before(s.WaitUntil):
		return fmt.Errorf("%w: step %s of saga %s waited until %s", ErrWaitOver, step, st.ID, s.WaitUntil.Format(time.RFC3339))
	case s.Status == StepCompleted && st.Status == StatusCompensating:
		return fmt.Errorf("%w: step %s of saga %s completed before and is being compensated", ErrCompensated, step, st.ID)
	}
	return fmt.Errorf("%w: step %s of saga %s is %s at attempt %d, the token is attempt %d's", ErrNotWaiting, step, st.ID, s.Status, s.Attempts, attempt)
}
