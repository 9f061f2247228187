package saga

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/choreo-go/choreo/saga/internal/engine"
)

// A step completed later (WaitsFor) is settled from outside its action:
// the action returns Later, and whoever gets the answer calls Complete or
// Fail with the step's completion token.

// Later is what the action of a step completed later returns to say the
// step started and its outcome comes later:
//
//	tok := saga.CompletionToken(ctx)
//	// hand tok to whoever will report the outcome
//	return saga.Later[Charged]()
func Later[Out any]() (Out, error) {
	var zero Out
	return zero, ErrLater
}

// CompletionToken returns, within the action of a step completed later
// (WaitsFor), the token that completes this attempt of the step
// (Step.Complete, Step.Fail): <flow>.v<N>.<saga>.<step>.<attempt>. It is a
// name, not a secret: only the step owner's identity may record the
// step's outcome, so hand it on as freely as the saga's id. It is ""
// anywhere else. Get shows the waiting attempt's token too
// (StepState.Token).
func CompletionToken(ctx context.Context) string { return engine.CompletionToken(ctx) }

// Complete reports that the waiting attempt of s that token names
// succeeded with out: the step completes and the saga goes on. It works
// in any process whose client has the step owner's identity (another
// instance, a webhook handler), after restarts. Completing twice gets
// ErrNotWaiting; after the wait timed out, ErrWaitOver; after the saga
// compensated the step, ErrCompensated (undo the effect yourself); with
// another identity, the broker's permission error. None changes anything.
func (s *Step[In, Out]) Complete(ctx context.Context, c *Client, token string, out Out) error {
	if s == nil || c == nil {
		return fmt.Errorf("%w: nil step or client", ErrInvalidOption)
	}
	data, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("%w: result of %s: %v", ErrInvalidInput, s.Name(), err)
	}
	return c.e.Settle(ctx, s.def, token, data, nil)
}

// Fail reports that the waiting attempt of s that token names failed:
// Abort(err) compensates the saga (a retriable step is tried again
// instead); any other error runs the step's action again after its
// backoff, while its retries last (then as Abort). It is refused as
// Complete is.
func (s *Step[In, Out]) Fail(ctx context.Context, c *Client, token string, err error) error {
	if s == nil || c == nil || err == nil {
		return fmt.Errorf("%w: nil step, client or error", ErrInvalidOption)
	}
	return c.e.Settle(ctx, s.def, token, nil, err)
}
