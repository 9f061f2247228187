package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// Finding is one thing Diagnose found wrong.
type Finding struct {
	Kind   string `json:"kind"` // registry, unserved, behind, overdue, wait-overdue, unanswered, parked, paused, limits
	Flow   string `json:"flow,omitempty"`
	What   string `json:"what"`   // what is wrong, in a line
	Advice string `json:"advice"` // what to do about it
	// Waiting is, for an unserved step, how long the oldest of the sagas
	// there has waited for it (since the step was triggered).
	Waiting time.Duration `json:"waiting,omitempty"`
}

// DiagnoseOptions are Diagnose's thresholds; zero values take defaults.
type DiagnoseOptions struct {
	Behind  uint64        // a consumer with more messages pending than this is behind (default 1000)
	Overdue time.Duration // a running saga this far past its deadline, or a scheduled one past its begin, is stuck (default 1m)
	Full    float64       // a stream this full (0-1) is near its limits (default 0.8)
	// Idle is how long a saga may wait at a step whose consumer has no
	// pull waiting and nothing in a runner's hands (and has delivered
	// nothing for as long) before the step is reported unserved (default
	// 30s): a runner restarting, or between two pulls, is not a finding.
	// A consumer that does not exist is reported at once.
	Idle time.Duration
}

// Diagnose says what is wrong now: steps whose sagas wait because no
// runner of their version is attached, consumers far behind, sagas past
// their deadline and still running, parked sagas, a stream near its
// limits, a flow version whose participants registered different
// definitions. It reads every saga of every registered flow (as List does):
// an operator's tool.
func (c *Client) Diagnose(ctx context.Context, o DiagnoseOptions) ([]Finding, error) {
	if o.Behind == 0 {
		o.Behind = 1000
	}
	if o.Overdue == 0 {
		o.Overdue = time.Minute
	}
	if o.Full == 0 {
		o.Full = 0.8
	}
	if o.Idle == 0 {
		o.Idle = 30 * time.Second
	}
	var out []Finding
	regs, err := c.registered(ctx, "")
	if err != nil {
		return nil, err
	}
	pauses, err := c.Pauses(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, p := range pauses {
		resume := fmt.Sprintf("choreo flows resume %s %d", p.Flow, p.Version)
		if p.Step != "" {
			resume += " " + p.Step
		}
		until := ""
		if !p.Until.IsZero() {
			until = " until " + p.Until.Format(time.RFC3339)
		}
		out = append(out, Finding{Kind: "paused", Flow: p.Flow,
			What:   fmt.Sprintf("%s is paused%s by %s since %s: %s", p.What(), until, p.By, p.At.Format(time.RFC3339), p.Reason),
			Advice: "its triggers wait in the broker; when the cause is gone: " + resume})
	}
	names := map[string]bool{}
	for _, r := range regs {
		names[r.flow] = true
		if !r.ok {
			out = append(out, Finding{Kind: "registry", Flow: r.flow,
				What:   fmt.Sprintf("the registry has no definition of %s v%d that its participants agree on: %s", r.flow, r.version, r.problem),
				Advice: "a participant runs another build of the flow, or its identity lies about it: compare the services' builds, and look into the one that differs"})
		}
	}
	for _, name := range sortedKeys(names) {
		sagas, err := c.List(ctx, Named(name))
		if err != nil {
			return nil, err
		}
		waiting := map[string]int{}      // "v1/step" -> sagas running it
		oldest := map[string]time.Time{} // "v1/step" -> when the first of them was triggered
		for _, st := range sagas {
			switch {
			case st.Status == StatusCompensationFailed:
				out = append(out, Finding{Kind: "parked", Flow: name,
					What:   fmt.Sprintf("saga %s (v%d) is parked: %s", st.ID, st.Version, st.Reason),
					Advice: fmt.Sprintf("fix what its compensation needs, then: choreo sagas retry %s %s", name, st.ID)})
			case st.Status == StatusRunning && !st.Deadline.IsZero() && time.Since(st.Deadline) > o.Overdue:
				out = append(out, Finding{Kind: "overdue", Flow: name,
					What:   fmt.Sprintf("saga %s (v%d) is running %s past its deadline", st.ID, st.Version, time.Since(st.Deadline).Round(time.Second)),
					Advice: "no runner of its flow handles its timer (CHOREO_TIMERS): start one, or cancel it"})
			case st.Status == StatusScheduled && time.Since(st.Scheduled) > o.Overdue:
				out = append(out, Finding{Kind: "overdue", Flow: name,
					What:   fmt.Sprintf("saga %s (v%d) was to begin %s ago and has not", st.ID, st.Version, time.Since(st.Scheduled).Round(time.Second)),
					Advice: "no runner of its flow handles its timer (CHOREO_TIMERS): start one, or cancel it"})
			}
			if p := st.Paused; p != nil {
				out = append(out, Finding{Kind: "paused", Flow: name,
					What:   fmt.Sprintf("saga %s (v%d) is paused by %s since %s: %s", st.ID, st.Version, p.By, p.At.Format(time.RFC3339), p.Reason),
					Advice: fmt.Sprintf("its next steps are held; when the cause is gone: choreo sagas resume %s %s", name, st.ID)})
			}
			if st.Status.Terminal() {
				continue
			}
			out = append(out, overdueWaits(name, st, c.j.sagaTime(), o.Overdue)...)
			for _, s := range st.Steps {
				if s.Status == StepRunning {
					key := fmt.Sprintf("%d/%s", st.Version, s.Name)
					waiting[key]++
					if o, ok := oldest[key]; !ok || s.StartedAt.Before(o) {
						oldest[key] = s.StartedAt
					}
				}
			}
		}
		for _, key := range sortedKeys(waiting) {
			slash := strings.Index(key, "/")
			v, _ := strconv.Atoi(key[:slash])
			step := key[slash+1:]
			if _, paused := pausedIn(pauses, name, v, step); paused {
				continue // its pause is the finding
			}
			if !c.served(ctx, name, v, step) {
				waited := time.Since(oldest[key])
				idle, ok := c.idle(ctx, name, v, step)
				if ok && (idle < o.Idle || waited < o.Idle) {
					continue
				}
				// What is measured is said: the sagas' wait is known, when
				// the last runner left is not (the consumer's last delivery
				// may be much older).
				where := "it has no consumer"
				if ok {
					where = fmt.Sprintf("no runner of v%d is attached to it now; its consumer last delivered a message %s ago", v, idle.Round(time.Second))
				}
				out = append(out, Finding{Kind: "unserved", Flow: name, Waiting: waited,
					What:   fmt.Sprintf("%d saga(s) of %s v%d wait at step %s, the oldest for %s (%s)", waiting[key], name, v, step, waited.Round(time.Second), where),
					Advice: fmt.Sprintf("start a service that runs %s v%d (a runner whose ServeVersions includes %d)", name, v, v)})
			}
		}
	}
	lister := c.j.stream.ListConsumers(ctx)
	for ci := range lister.Info() {
		if ci.NumPending > o.Behind {
			out = append(out, Finding{Kind: "behind", What: fmt.Sprintf("consumer %s has %d messages pending (%d being handled)", ci.Name, ci.NumPending, ci.NumAckPending),
				Advice: "add instances of the service that runs it, or look for a slow handler"})
		}
	}
	if err := lister.Err(); err != nil && err != jetstream.ErrEndOfData {
		return nil, fmt.Errorf("saga: consumers: %w", err)
	}
	info, err := c.j.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("saga: stream %s: %w", StreamName, err)
	}
	cfg, st := info.Config, info.State
	if cfg.MaxMsgs > 0 && float64(st.Msgs) >= o.Full*float64(cfg.MaxMsgs) {
		out = append(out, Finding{Kind: "limits", What: fmt.Sprintf("stream %s holds %d of its %d messages", StreamName, st.Msgs, cfg.MaxMsgs),
			Advice: "raise the limit, or shorten the retention of ended sagas (WithRetention)"})
	}
	if cfg.MaxBytes > 0 && float64(st.Bytes) >= o.Full*float64(cfg.MaxBytes) {
		out = append(out, Finding{Kind: "limits", What: fmt.Sprintf("stream %s holds %d of its %d bytes", StreamName, st.Bytes, cfg.MaxBytes),
			Advice: "raise the limit, or shorten the retention of ended sagas (WithRetention)"})
	}
	return out, nil
}

// idle is how long ago the consumer of a step of flow version v last
// delivered a message (since it was created, if never); false when it
// does not exist or cannot be read.
func (c *Client) idle(ctx context.Context, flow string, v int, step string) (time.Duration, bool) {
	cons, err := c.j.js.Consumer(ctx, wire.Stream, wire.DoConsumer(flow, v, step))
	if err != nil {
		return 0, false
	}
	ci := cons.CachedInfo()
	last := ci.Created
	if ci.Delivered.Last != nil && ci.Delivered.Last.After(last) {
		last = *ci.Delivered.Last
	}
	return time.Since(last), true
}

// overdueWaits reports the steps of saga st (of flow name) completed later
// whose wait is overdue: past its timeout by more than overdue and still
// waiting or due to be tried again (no runner of the step's owner takes
// its timer), or a retriable step asked as often as its retries allow
// and still without an answer (the party does not answer).
func overdueWaits(name string, st *State, now time.Time, overdue time.Duration) []Finding {
	var out []Finding
	fd := versions.get(name, st.Version)
	for _, s := range st.Steps {
		if !ownTimed(&s) {
			continue
		}
		on := s.WaitingOn
		if on == "" {
			on = "its party"
		}
		if late := now.Sub(s.WaitUntil); late > overdue {
			out = append(out, Finding{Kind: "wait-overdue", Flow: name, Waiting: late,
				What:   fmt.Sprintf("step %s of saga %s (v%d) waits on %s %s past its timeout (attempt %d)", s.Name, st.ID, st.Version, on, late.Round(time.Second), s.Attempts),
				Advice: fmt.Sprintf("no runner of the step's owner takes its timer (consumer %s_v%d_%s_wait on CHOREO_TIMERS): start the service that owns %s", name, st.Version, s.Name, s.Name)})
			continue
		}
		if fd == nil || s.Status != StepWaiting {
			continue
		}
		d := fd.byName[s.Name]
		if d == nil || d.kind != RetriableStep {
			continue
		}
		if limit := d.retry.withDefaults(5, 5*time.Second).MaxAttempts; s.Attempts >= limit {
			out = append(out, Finding{Kind: "unanswered", Flow: name,
				What:   fmt.Sprintf("step %s of saga %s (v%d) has asked %s %d times with no answer; it waits until %s and asks again", s.Name, st.ID, st.Version, on, s.Attempts, s.WaitUntil.UTC().Format(time.RFC3339)),
				Advice: fmt.Sprintf("look at %s (is it up, does it get the request?); or settle the step yourself with its completion token (Step.Complete)", on)})
		}
	}
	return out
}
