package saga

import (
	"context"
	"encoding/json"
	"fmt"
)

// Info describes the step run a handler is called for.
type Info struct {
	Flow    string
	ID      string // the saga's id
	Step    string
	Phase   string // "action" or "compensation"
	Attempt int    // 1 for the first
	// IdempotencyKey is the same for every attempt and every redelivery of
	// this step's action (or compensation) in this saga, and differs
	// between the two. Pass it to the systems the handler changes so that a
	// retried effect happens once.
	IdempotencyKey string
}

type infoKey struct{}

type runInfo struct {
	Info
	c *Client
}

// InfoFrom returns the Info of the handler call ctx belongs to.
func InfoFrom(ctx context.Context) (Info, bool) {
	ri, ok := ctx.Value(infoKey{}).(*runInfo)
	if !ok {
		return Info{}, false
	}
	return ri.Info, true
}

// IdempotencyKey returns the handler call's idempotency key, "" outside a
// handler.
func IdempotencyKey(ctx context.Context) string {
	i, _ := InfoFrom(ctx)
	return i.IdempotencyKey
}

// InputOf returns the input the saga was started with, from within one of
// its handlers.
func InputOf[T any](ctx context.Context) (T, error) {
	var v T
	ri, ok := ctx.Value(infoKey{}).(*runInfo)
	if !ok {
		return v, fmt.Errorf("saga: InputOf outside a handler")
	}
	data, err := ri.c.eventData(ctx, ri.Flow, ri.ID, sagaStep, phaseStart)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("saga: input of %s/%s: %w", ri.Flow, ri.ID, err)
	}
	return v, nil
}

// ResultOf returns the result step s recorded in this saga, from within
// one of its handlers. It returns ErrNotFound if s has not completed.
func ResultOf[In, Out any](ctx context.Context, s *Step[In, Out]) (Out, error) {
	var v Out
	ri, ok := ctx.Value(infoKey{}).(*runInfo)
	if !ok {
		return v, fmt.Errorf("saga: ResultOf outside a handler")
	}
	data, err := ri.c.eventData(ctx, ri.Flow, ri.ID, s.def.name, phaseDone)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("saga: result of %s in %s/%s: %w", s.def.name, ri.Flow, ri.ID, err)
	}
	return v, nil
}
