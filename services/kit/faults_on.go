//go:build choreofaults

package kit

// The fault-injection build of the services (go build -tags choreofaults),
// used only by test/faults. Production binaries have none of this. It reads:
//
//	CHOREO_CRASH=<point>:<step>:<n>[,...]   SIGKILL this process the n-th time it
//	    reaches point for step (an action, or "<step>.undo" for its
//	    compensation). Points: "start" (the handler is called, nothing is
//	    done), "effect" (the handler's effect is made, nothing is recorded),
//	    "ack" (the outcome is recorded, the message not acknowledged). The
//	    shop's effects are single compare-and-set writes, so these are every
//	    state a crash during an action can leave.
//	CHOREO_SLOW=<step>:<duration>[,...]  the step's action takes that long,
//	    deaf to its context (like a call that takes none), then makes its
//	    effect. Each call is logged ("CHOREO_SLOW: <step> of <saga> attempt
//	    <n> start|end <unix ms> [ok|error: ...]").
//	CHOREO_REFUND_ATTEMPTS=<n>        (schemas) a failing refund parks after n.
//	CHOREO_FAIL_UNDO=<step>:<n>       the step's compensation fails its first
//	    n attempts of each saga (n<0: always).
//	CHOREO_ACK_WAIT=<duration>        the runner's ack wait.
//	CHOREO_RECONCILE_AFTER=<duration> how old an order recorded but not
//	    started must be before the order service's reconciler starts it.
//
// CHOREO_CRASH also names points outside saga handlers (Crash): the order
// service's "recorded", "announced" and "started" of step "place", after
// each of its writes when an order is placed.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/choreo-go/choreo/saga"
)

func faultOptions() []saga.RunnerOption {
	var out []saga.RunnerOption
	if d, err := time.ParseDuration(os.Getenv("CHOREO_ACK_WAIT")); err == nil {
		out = append(out, saga.WithAckWait(d))
	}
	for _, v := range strings.Split(os.Getenv("CHOREO_CRASH"), ",") {
		if v == "" {
			continue
		}
		f := strings.Split(v, ":")
		n, err := strconv.Atoi(f[len(f)-1])
		if len(f) != 3 || err != nil {
			fmt.Fprintf(os.Stderr, "CHOREO_CRASH=%q: want <point>:<step>:<n>[,...]\n", v)
			os.Exit(2)
		}
		c := &crasher{point: f[0], step: f[1], at: n}
		out = append(out, saga.WithInterceptor(c.intercept), saga.WithOnRecorded(c.recorded))
	}
	slow := map[string]time.Duration{}
	for _, v := range strings.Split(os.Getenv("CHOREO_SLOW"), ",") {
		if v == "" {
			continue
		}
		step, ds, _ := strings.Cut(v, ":")
		d, err := time.ParseDuration(ds)
		if err != nil {
			fmt.Fprintf(os.Stderr, "CHOREO_SLOW=%q: want <step>:<duration>[,...]\n", v)
			os.Exit(2)
		}
		slow[step] = d
	}
	if len(slow) > 0 {
		out = append(out, saga.WithInterceptor(func(ctx context.Context, info saga.Info, next func(context.Context) error) error {
			d, ok := slow[info.Step]
			if !ok || info.Phase != saga.PhaseAction {
				return next(ctx)
			}
			fmt.Fprintf(os.Stderr, "CHOREO_SLOW: %s of %s attempt %d start %d\n", info.Step, info.ID, info.Attempt, time.Now().UnixMilli())
			time.Sleep(d) // deaf to ctx, like a call that takes none
			err := next(context.WithoutCancel(ctx))
			outcome := "ok"
			if err != nil {
				outcome = "error: " + strings.ReplaceAll(err.Error(), "\n", " ")
			}
			fmt.Fprintf(os.Stderr, "CHOREO_SLOW: %s of %s attempt %d end %d %s\n", info.Step, info.ID, info.Attempt, time.Now().UnixMilli(), outcome)
			return err
		}))
	}
	if v := os.Getenv("CHOREO_FAIL_UNDO"); v != "" {
		step, ns, _ := strings.Cut(v, ":")
		n, _ := strconv.Atoi(ns)
		out = append(out, saga.WithInterceptor(func(ctx context.Context, info saga.Info, next func(context.Context) error) error {
			if info.Step == step && info.Phase == saga.PhaseCompensation && (n < 0 || info.Attempt <= n) {
				return errors.New("injected compensation failure")
			}
			return next(ctx)
		}))
	}
	return out
}

// crashers are CHOREO_CRASH's points for Crash.
var crashers = sync.OnceValue(func() []*crasher {
	var out []*crasher
	for _, v := range strings.Split(os.Getenv("CHOREO_CRASH"), ",") {
		f := strings.Split(v, ":")
		if n, err := strconv.Atoi(f[len(f)-1]); err == nil && len(f) == 3 {
			out = append(out, &crasher{point: f[0], step: f[1], at: n})
		}
	}
	return out
})

// Crash kills this process at a crash point that CHOREO_CRASH names.
func Crash(point, step string) {
	for _, c := range crashers() {
		c.hit(point, step)
	}
}

// ReconcileAfter is CHOREO_RECONCILE_AFTER, if set.
func ReconcileAfter() (time.Duration, bool) {
	d, err := time.ParseDuration(os.Getenv("CHOREO_RECONCILE_AFTER"))
	return d, err == nil
}

type crasher struct {
	point, step string
	at          int
	mu          sync.Mutex
	seen        int
}

func (c *crasher) hit(point, step string) {
	if point != c.point || step != c.step {
		return
	}
	c.mu.Lock()
	c.seen++
	now := c.seen == c.at
	c.mu.Unlock()
	if now {
		fmt.Fprintf(os.Stderr, "CHOREO_CRASH: kill -9 at %s of %s (%d)\n", point, step, c.at)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

func name(info saga.Info) string {
	if info.Phase == saga.PhaseCompensation {
		return info.Step + ".undo"
	}
	return info.Step
}

func (c *crasher) intercept(ctx context.Context, info saga.Info, next func(context.Context) error) error {
	c.hit("start", name(info))
	err := next(ctx)
	if err == nil {
		c.hit("effect", name(info))
	}
	return err
}

func (c *crasher) recorded(_ *saga.State, step string, phase saga.Phase) {
	if phase == saga.PhaseCompensated {
		step += ".undo"
	}
	c.hit("ack", step)
}
