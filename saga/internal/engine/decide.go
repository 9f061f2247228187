package engine

import (
	"errors"
	"fmt"
	"time"
)

// The decisions of the runner, as pure functions of a saga's state and an
// outcome: what to record, and what to do with the message. The runner
// around them only reads, calls handlers and writes.

// triggerVerdict is what a delivered trigger of a step calls for, before
// its action runs.
type triggerVerdict int

const (
	triggerIgnore  triggerVerdict = iota // not this step's trigger (a sibling's result): acknowledge
	triggerSettled                       // decided already (a redelivery): emit what is due, acknowledge
	triggerAbandon                       // the saga compensates and this run may have had its effect
	triggerSkip                          // the saga compensates and this step never ran
	triggerExpired                       // no outcome in time: record it unknown
	triggerRun                           // run the action
)

func (v triggerVerdict) String() string {
	return [...]string{"ignore", "settled", "abandon", "skip", "expired", "run"}[v]
}

// stepLimit is when a step's action must have its outcome by, and why.
type stepLimit struct {
	at     time.Time // zero: unbounded
	reason string
}

func (b stepLimit) reached(now time.Time) bool { return !b.at.IsZero() && !now.Before(b.at) }

// stepBound is the earlier of the step's timeout and the saga's deadline.
// Only compensatable steps are bounded: a retriable step runs until it
// succeeds, and a pivot, once triggered, decides the saga's direction.
func stepBound(d *stepDef, st *State) stepLimit {
	var b stepLimit
	if d.kind != CompensatableStep {
		return b
	}
	if s := st.Step(d.name); d.timeout > 0 && s != nil {
		b = stepLimit{s.StartedAt.Add(d.timeout), fmt.Sprintf("timed out after %v", d.timeout)}
	}
	if !st.Deadline.IsZero() && (b.at.IsZero() || st.Deadline.Before(b.at)) {
		b = stepLimit{st.Deadline, "saga deadline exceeded"}
	}
	return b
}

// judgeTrigger decides what a trigger of step d does, given the saga's
// state, the index in the log of the event that triggered (trigger), how
// many times the broker has delivered it, whether it waited longer than
// the ack wait before this delivery (stale), and the time.
func judgeTrigger(d *stepDef, cur *State, trigger, delivered int, stale bool, now time.Time) triggerVerdict {
	st := cur.Step(d.name)
	switch {
	case st == nil || st.Trigger != trigger:
		return triggerIgnore
	case st.Status != StepRunning, !st.WaitUntil.IsZero():
		// Decided, or a step completed later whose next attempt its own
		// timer runs.
		return triggerSettled
	case cur.Status != StatusRunning && (delivered > 1 || stale) && d.kind == CompensatableStep:
		// An earlier delivery may have made its effect before a crash. So
		// may another copy of a trigger that waited past the ack wait: a
		// copy read while the saga still ran takes the fast path and runs
		// the action, and a skip here would leave its effect
		// uncompensated (found by the fault suite's duplicated deliveries
		// with a slow participant). Compensating a step that never ran is
		// what a compensation must already bear.
		return triggerAbandon
	case cur.Status != StatusRunning:
		return triggerSkip
	case stepBound(d, cur).reached(now):
		return triggerExpired
	}
	return triggerRun
}

// verdict is what the runner records for a decision: the event to append
// (none when phase is ""), the input to dead-letter first, and whether the
// message is then left for redelivery after retryIn.
type verdict struct {
	phase      Phase
	data       []byte
	apply      transition
	deadLetter string        // copy the input to the dead letters with this reason first
	retryIn    time.Duration // > 0: record what can be recorded, then redeliver after this
	reject     string        // dead-letter and terminate the message after recording
	done       bool          // delete the message once it is recorded: a fired timer
	arm        bool          // set the step's own timer for the state recorded (a step completed later)
	warn       string        // a line worth an operator's attention
}

// triggered is the verdict for a trigger that is not run.
func notRunVerdict(d *stepDef, v triggerVerdict, attempt int, b stepLimit) verdict {
	switch v {
	case triggerAbandon:
		return verdict{phase: PhaseAbandoned, apply: func(s *State, now time.Time) error { return s.abandon(d.name, now) }}
	case triggerSkip:
		return verdict{phase: PhaseSkipped, apply: func(s *State, now time.Time) error { return s.skip(d.name, now) }}
	case triggerExpired:
		return unknownVerdict(d, attempt, b.reason)
	}
	return verdict{}
}

func failVerdict(d *stepDef, attempt int, reason string) verdict {
	return verdict{phase: PhaseFailed, apply: func(s *State, now time.Time) error { return s.fail(d.name, attempt, reason, now) }}
}

func unknownVerdict(d *stepDef, attempt int, reason string) verdict {
	return verdict{phase: PhaseTimedOut, apply: func(s *State, now time.Time) error { return s.timeOut(d.name, attempt, reason, now) }}
}

// outcome is what an action's call came to.
type actionResult struct {
	out  []byte
	err  error
	late bool // its limit passed by the time it returned
	// tooLarge is the event size limit when out would make an event over
	// it, else 0.
	tooLarge int
}

// judgeAction decides what an action's outcome records.
func judgeAction(d *stepDef, attempt int, o actionResult, b stepLimit) verdict {
	var undecodable errUndecodable
	policy := d.retry.withDefaults(5, 5*time.Second)
	switch {
	case o.err == nil && o.tooLarge > 0:
		// A result no reader would accept. Its effect may have been made:
		// a compensatable step's outcome is unknown and compensated, any
		// other step fails.
		reason := fmt.Sprintf("its result is %d bytes, over the %d-byte event limit", len(o.out), o.tooLarge)
		v := unknownVerdict(d, attempt, reason)
		if d.kind != CompensatableStep {
			v = failVerdict(d, attempt, reason)
		}
		v.warn = "step result too large: " + reason
		return v
	case o.err == nil && o.late:
		// A late result: record it so that it is compensated, and compensate.
		reason := fmt.Sprintf("step %s: %s (its late result is compensated)", d.name, b.reason)
		return verdict{phase: PhaseDone, data: o.out, apply: func(s *State, now time.Time) error {
			if err := s.complete(d.name, attempt, now); err != nil {
				return err
			}
			s.compensate(reason)
			return nil
		}}
	case o.err == nil:
		return verdict{phase: PhaseDone, data: o.out, apply: func(s *State, now time.Time) error { return s.complete(d.name, attempt, now) }}
	case o.late && !IsAbort(o.err):
		return unknownVerdict(d, attempt, fmt.Sprintf("%s: %v", b.reason, o.err))
	case errors.Is(o.err, ErrLater) && !d.Waits():
		v := failVerdict(d, attempt, "its action returned Later, but the flow does not declare the step WaitsFor")
		v.warn = "a step that does not wait returned Later"
		return v
	case errors.Is(o.err, ErrLater):
		return waitVerdict(d, attempt)
	case errors.As(o.err, &undecodable):
		v := failVerdict(d, attempt, o.err.Error())
		v.deadLetter = o.err.Error()
		return v
	case IsAbort(o.err) && d.kind != RetriableStep:
		return failVerdict(d, attempt, o.err.Error())
	case d.kind != RetriableStep && attempt >= policy.MaxAttempts:
		// An earlier attempt may have made the effect and lost its
		// outcome (its append failed): a compensatable step's outcome is
		// unknown and compensated, as after a timeout; a pivot fails.
		reason := fmt.Sprintf("retries exhausted after %d attempts: %v", attempt, o.err)
		v := unknownVerdict(d, attempt, reason)
		if d.kind != CompensatableStep {
			v = failVerdict(d, attempt, reason)
		}
		v.warn = "retries exhausted"
		return v
	}
	reason := o.err.Error()
	return verdict{
		phase: PhaseRetry, retryIn: policy.backoff(attempt),
		apply: func(s *State, _ time.Time) error { return s.retrying(d.name, attempt, reason) },
	}
}

// waitVerdict records that attempt of step d started and waits for its
// outcome, until the step's wait times out.
func waitVerdict(d *stepDef, attempt int) verdict {
	return verdict{phase: PhaseWaiting, arm: true, apply: func(s *State, now time.Time) error {
		return s.startWait(d.name, attempt, now.Add(d.waitFor), d.waitOn)
	}}
}

// waitRetry turns a retry verdict of a step completed later into one its
// own timer runs: the broker cannot redeliver what started the attempt (it
// was acknowledged when the step began waiting).
func waitRetry(d *stepDef, attempt int, reason string, in time.Duration) verdict {
	return verdict{phase: PhaseRetry, arm: true, apply: func(s *State, now time.Time) error {
		return s.retryWait(d.name, attempt, reason, now.Add(in))
	}}
}

// timerRun adapts the verdict of an attempt its step's timer ran: a retry
// is the timer's again, and the timer is deleted once the outcome is
// recorded.
func timerRun(d *stepDef, attempt int, v verdict, err error) verdict {
	if v.retryIn > 0 {
		reason := "retry"
		if err != nil {
			reason = err.Error()
		}
		v = waitRetry(d, attempt, reason, v.retryIn)
	}
	v.done = true
	return v
}

// waitOver decides what a step's wait that timed out comes to: another
// attempt while its retries last (a retriable step's never run out: past
// them it is reported), else a compensatable step's outcome is unknown
// (compensated) and a pivot's is a failure.
func waitOver(d *stepDef, attempt int) (again bool, v verdict) {
	policy := d.retry.withDefaults(5, 5*time.Second)
	if d.kind == RetriableStep || attempt < policy.MaxAttempts {
		if d.kind == RetriableStep && attempt >= policy.MaxAttempts {
			v.warn = fmt.Sprintf("step %s waited on %s %d times with no answer", d.name, d.waitOn, attempt)
		}
		return true, v
	}
	reason := fmt.Sprintf("no answer from %s within %v, %d attempts", d.waitOn, d.waitFor, attempt)
	v = unknownVerdict(d, attempt, reason)
	if d.kind != CompensatableStep {
		v = failVerdict(d, attempt, reason)
	}
	v.done = true
	return false, v
}

// judgeCompensation decides what a compensation's outcome records.
func judgeCompensation(d *stepDef, attempt int, err error) verdict {
	if err == nil {
		return verdict{phase: PhaseCompensated, apply: func(s *State, now time.Time) error { return s.compensated(d.name, attempt, now) }}
	}
	policy := d.compRetry.withDefaults(25, 30*time.Second)
	if attempt < policy.MaxAttempts {
		reason := err.Error()
		return verdict{
			phase: PhaseCompensationRetry, retryIn: policy.backoff(attempt),
			apply: func(s *State, _ time.Time) error { return s.compRetrying(d.name, attempt, reason) },
		}
	}
	reason := fmt.Sprintf("compensation of %s failed after %d attempts: %v", d.name, attempt, err)
	return verdict{
		phase: PhaseParked, reject: reason, warn: "saga parked: " + reason,
		apply: func(s *State, now time.Time) error { return s.park(d.name, attempt, reason, now) },
	}
}

// schemaInvalid is the verdict for a step input the runner's validator
// refuses: the step fails (the saga compensates) and the input is
// dead-lettered with the reason.
func schemaInvalid(d *stepDef, attempt int, eventType string, err error) verdict {
	reason := fmt.Sprintf("schema-invalid %s: %v", eventType, err)
	v := failVerdict(d, attempt, reason)
	v.deadLetter = reason
	return v
}

// oversize is the event size limit when a result of outLen bytes, beside a
// state that encodes in stateLen bytes and the headers' room, would make an
// event over max; else 0. Results up to 1 KiB always fit.
func oversize(outLen, stateLen, max int) int {
	if outLen > 1024 && outLen+stateLen+4096 > max {
		return max
	}
	return 0
}

// stuckOn reports whether the saga, read as cur at sequence curSeq, stands
// on the trigger at trigSeq with step waiting for it: a trigger that
// cannot be read is then the step's end (it fails), or the saga would wait
// for ever.
func stuckOn(cur *State, curSeq, trigSeq uint64, step string) bool {
	if cur == nil || curSeq != trigSeq || cur.Status != StatusRunning {
		return false
	}
	s := cur.Step(step)
	return s != nil && s.Status == StepRunning
}

// unusableTrigger is the verdict for a trigger the saga stands on that
// cannot be read: the step fails with the reason and the trigger is
// dead-lettered.
func unusableTrigger(d *stepDef, attempt int, reason string) verdict {
	v := failVerdict(d, attempt, "unusable trigger: "+reason)
	v.deadLetter = reason
	v.warn = "dead-lettering a trigger, its step fails"
	return v
}

// undoDue reports whether a compensation command of step, sent in the
// operator epoch epoch, is to run on cur: the compensation is due and the
// command is not from before an operator's retry.
func undoDue(cur *State, step string, epoch int) bool {
	_, err := cur.due(step)
	return err == nil && epoch == cur.Epoch
}

// deadlinePassed is the verdict for a saga's deadline timer. fired says the
// broker's scheduler fired it: its clock is trusted over ours, so the
// deadline counts as passed even when this machine's clock is behind.
func deadlinePassed(fired bool) verdict {
	return verdict{done: true, phase: PhaseDeadline, apply: func(s *State, now time.Time) error {
		if fired && now.Before(s.Deadline) {
			now = s.Deadline
		}
		return s.expire(now)
	}}
}

// beginAt is when a scheduled saga's begin timer, read at now, begins it:
// now, or its scheduled time when the broker's scheduler fired the timer
// (its clock is trusted over ours); zero when it may not begin yet (a
// timer that someone published early) or is not scheduled.
func beginAt(cur *State, fired bool, now time.Time) time.Time {
	if cur.Status != StatusScheduled {
		return time.Time{}
	}
	if fired && now.Before(cur.Scheduled) {
		return cur.Scheduled
	}
	if now.Before(cur.Scheduled) {
		return time.Time{}
	}
	return now
}

// beginVerdict is the verdict for a scheduled saga's begin timer: the saga runs,
// with the deadline given (zero: none), which counts from its begin.
func beginVerdict(fired bool, deadline time.Time) verdict {
	return verdict{done: true, phase: PhaseBegin, apply: func(s *State, now time.Time) error {
		if fired && now.Before(s.Scheduled) {
			now = s.Scheduled
		}
		return s.commence(now, deadline)
	}}
}

// endVerdict is what becomes of the message of a saga's end after an OnEnd
// handler ran.
type endVerdict int

const (
	endAck        endVerdict = iota // handled: acknowledge
	endRetry                        // a plain error: redeliver later
	endDeadLetter                   // Abort: the handler can never take it
)

// judgeEnd decides what an OnEnd handler's error comes to.
func judgeEnd(err error) endVerdict {
	switch {
	case err == nil:
		return endAck
	case IsAbort(err):
		return endDeadLetter
	}
	return endRetry
}

// The decisions about a flow version, beside the runner's.

// refused reports whether Start refuses a version of that status: every
// status but active (a retired or draining version never starts another
// one in its place).
func refused(s VersionStatus) bool { return s != "" && s != VersionActive }

// versionStand is what a report says of a version whose registry status is
// mark: a draining version with no saga left reads drained, since the
// last of its sagas ended (lastEnd), or since the drain began (since) when
// none ended after it. Other statuses read as they are, with no drained
// time.
func versionStand(mark VersionStatus, left int, since, lastEnd time.Time) (VersionStatus, time.Time) {
	if mark != VersionDraining || left > 0 {
		return mark, time.Time{}
	}
	if lastEnd.After(since) {
		return VersionDrained, lastEnd
	}
	return VersionDrained, since
}
