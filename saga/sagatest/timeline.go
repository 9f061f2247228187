package sagatest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/choreo-go/choreo/saga"
)

// Timeline returns a saga's log as "step:phase" entries ("charge:done",
// "charge:compensated", "_saga:start"), leaving out retry entries, whose
// number depends on timing (a step's attempts are in its state).
func Timeline(tb testing.TB, c *saga.Client, f saga.FlowRef, id string) []string {
	tb.Helper()
	evs, err := c.Timeline(context.Background(), f, id)
	if err != nil {
		tb.Fatalf("sagatest: timeline %s/%s: %v", f.Name(), id, err)
	}
	var out []string
	for _, e := range evs {
		if e.Phase == saga.PhaseRetry || e.Phase == saga.PhaseCompensationRetry {
			continue
		}
		out = append(out, e.String())
	}
	return out
}

// AssertTimeline fails the test unless the saga's timeline (see Timeline)
// is exactly want.
func AssertTimeline(tb testing.TB, c *saga.Client, f saga.FlowRef, id string, want ...string) {
	tb.Helper()
	if got := Timeline(tb, c, f, id); !slices.Equal(got, want) {
		tb.Errorf("sagatest: timeline of %s/%s:\n got  %q\n want %q", f.Name(), id, got, want)
	}
}

// Recorder records the actions and compensations a runner calls, per saga.
// Add it with saga.WithInterceptor(rec.Interceptor()).
type Recorder struct {
	mu    sync.Mutex
	calls map[string][]string // saga id -> "step:action" / "step:compensation" per successful call
	tries map[string]int      // saga id + entry -> calls, failed ones included
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{calls: map[string][]string{}, tries: map[string]int{}}
}

// Interceptor returns the interceptor that feeds the recorder.
func (r *Recorder) Interceptor() saga.Interceptor {
	return func(ctx context.Context, info saga.Info, next func(context.Context) error) error {
		err := next(ctx)
		entry := info.Step + ":" + string(info.Phase)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.tries[info.ID+"/"+entry]++
		if err == nil {
			r.calls[info.ID] = append(r.calls[info.ID], entry)
		}
		return err
	}
}

// Calls returns the successful calls made for a saga, in order.
func (r *Recorder) Calls(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls[id])
}

// Tries returns how often a handler was called for a saga, failures
// included; entry is "step:action" or "step:compensation".
func (r *Recorder) Tries(id, entry string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tries[id+"/"+entry]
}

func (r *Recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.calls)
}
