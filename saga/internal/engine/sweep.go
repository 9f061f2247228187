package engine

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/internal/wire"
)

// The broker's scheduler fires a step's timer once. A leader change of
// the timer stream can lose that fire (nats-server marks the schedule in
// flight, the target's write is lost with the old leader, and the new one
// does not fire it again), and the step would wait for ever. So a runner
// remembers the waits it armed and, once one is overdue by sweepGrace,
// reads the saga: a step still waiting on that attempt and deadline gets
// its schedule again, firing now. A fire that was only late meets an
// attempt the step has left, and does nothing (onStepTimer).

// sweepGrace is how long past its time a step's timer may take to fire
// before the runner arms it again.
const sweepGrace = 15 * time.Second

// maxArmed bounds the waits a journal remembers; past it, new ones rely
// on the broker alone (and doctor's wait-overdue finding).
const maxArmed = 1 << 16

// armedWait is a step's own timer this journal set.
type armedWait struct {
	flow, id, step string
	attempt        int
	until          time.Time
}

type armedWaits struct {
	mu sync.Mutex
	m  map[string]armedWait // by flow.id.step
}

// remember notes a timer armed for step s of st.
func (a *armedWaits) remember(st *State, s *StepState) {
	key := st.Flow + "." + st.ID + "." + s.Name
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[string]armedWait{}
	}
	if _, ok := a.m[key]; !ok && len(a.m) >= maxArmed {
		return
	}
	a.m[key] = armedWait{flow: st.Flow, id: st.ID, step: s.Name, attempt: s.Attempts, until: s.WaitUntil}
}

// sweepBatch bounds the sagas one sweep reads.
const sweepBatch = 200

// overdue returns the waits due by now less the grace (at most
// sweepBatch: the next sweep takes the rest).
func (a *armedWaits) overdue(now time.Time) []armedWait {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []armedWait
	for _, w := range a.m {
		if w.until.Add(sweepGrace).Before(now) {
			out = append(out, w)
			if len(out) == sweepBatch {
				break
			}
		}
	}
	return out
}

func (a *armedWaits) forget(w armedWait) {
	key := w.flow + "." + w.id + "." + w.step
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur, ok := a.m[key]; ok && cur.attempt == w.attempt && cur.until.Equal(w.until) {
		delete(a.m, key)
	}
}

// sweepWaits arms again, to fire now, the timers of the waits this
// journal armed that are overdue and whose step still waits on them. It
// returns how many it armed again.
func (j *journal) sweepWaits(ctx context.Context) int {
	n := 0
	for _, w := range j.armed.overdue(j.sagaTime()) {
		if ctx.Err() != nil {
			return n
		}
		st, _, err := j.load(ctx, w.flow, w.id, 0)
		if errors.Is(err, ErrNotFound) {
			j.armed.forget(w)
			continue
		}
		if err != nil {
			continue // the broker is away: the next sweep
		}
		s := st.Step(w.step)
		if !ownTimed(s) || s.Attempts != w.attempt || !s.WaitUntil.Equal(w.until) {
			j.armed.forget(w) // it fired, or the step moved on
			continue
		}
		if err := j.refire(ctx, st, s); err != nil {
			j.opts.logger.Warn("choreo: arm a step's overdue timer again", "flow", w.flow, "saga", w.id, "step", w.step, "err", err)
			continue
		}
		j.opts.logger.Warn("choreo: a step's timer did not fire in time; armed again to fire now",
			"flow", w.flow, "saga", w.id, "step", w.step, "attempt", w.attempt, "due", w.until)
		n++
	}
	return n
}

// refire publishes step s's schedule again, firing at once (by the
// broker's clock), with the attempt it belongs to.
func (j *journal) refire(ctx context.Context, st *State, s *StepState) error {
	attempt := strconv.Itoa(s.Attempts)
	now := time.Now().UTC()
	m := &nats.Msg{
		Subject: wire.StepSchedSubject(st.Flow, st.ID, s.Name),
		Header: nats.Header{
			nats.MsgIdHdr:          {st.Flow + "." + st.ID + "." + s.Name + "." + attempt + ".swept." + strconv.FormatInt(now.UnixNano(), 10)},
			"Nats-Schedule":        {"@at " + now.Format(time.RFC3339Nano)},
			"Nats-Schedule-Target": {wire.StepTimerSubject(st.Flow, st.ID, st.Version, s.Name)},
			wire.TimerKind:         {wire.TimerStep},
			wire.Attempt:           {attempt},
		},
	}
	inject(ctx, m.Header)
	_, err := j.send(ctx, m)
	return err
}
