package saga

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/choreo-go/choreo/internal/wire"
)

// Info describes the step run a handler is called for.
type Info struct {
	Flow    string
	Version int    // the flow version the saga runs on
	ID      string // the saga's id
	Step    string
	Phase   Phase // PhaseAction or PhaseCompensation
	Attempt int   // 1 for the first
}

// IdempotencyKey is the same for every attempt and every redelivery of
// this step's action (or compensation) in this saga, and differs between
// the two. Pass it to the systems the handler changes so that a retried
// effect happens once.
func (i Info) IdempotencyKey() string {
	if i.Phase == PhaseCompensation {
		return i.Flow + "/" + i.ID + "/" + i.Step + "/compensation"
	}
	return i.Flow + "/" + i.ID + "/" + i.Step
}

type infoKey struct{}

type runInfo struct {
	Info
	j *journal
}

// InfoFrom returns the Info of the handler call ctx belongs to.
func InfoFrom(ctx context.Context) (Info, bool) {
	ri, ok := ctx.Value(infoKey{}).(*runInfo)
	if !ok {
		return Info{}, false
	}
	return ri.Info, true
}

// IdempotencyKey returns the handler call's idempotency key (see
// Info.IdempotencyKey), "" outside a handler.
func IdempotencyKey(ctx context.Context) string {
	i, ok := InfoFrom(ctx)
	if !ok {
		return ""
	}
	return i.IdempotencyKey()
}

// InputOf returns the input the saga was started with, from within one of
// its handlers.
func InputOf[T any](ctx context.Context) (T, error) {
	var v T
	ri, ok := ctx.Value(infoKey{}).(*runInfo)
	if !ok {
		return v, fmt.Errorf("saga: InputOf outside a handler")
	}
	data, err := ri.j.eventData(ctx, ri.Flow, ri.Version, ri.ID, wire.SagaStep, PhaseStart)
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
	data, err := ri.j.eventData(ctx, ri.Flow, ri.Version, ri.ID, s.Name(), PhaseDone)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("saga: result of %s in %s/%s: %w", s.Name(), ri.Flow, ri.ID, err)
	}
	return v, nil
}
