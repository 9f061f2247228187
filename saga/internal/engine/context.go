package engine

import (
	"context"
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

// InputData returns the input the saga was started with, from within one
// of its handlers.
func InputData(ctx context.Context) ([]byte, Info, error) {
	ri, ok := ctx.Value(infoKey{}).(*runInfo)
	if !ok {
		return nil, Info{}, fmt.Errorf("saga: InputOf outside a handler")
	}
	data, err := ri.j.eventData(ctx, ri.Flow, ri.Version, ri.ID, wire.SagaStep, PhaseStart)
	return data, ri.Info, err
}

// ResultData returns the result step recorded in this saga, from within one
// of its handlers: ErrNotFound if it has not completed.
func ResultData(ctx context.Context, step string) ([]byte, Info, error) {
	ri, ok := ctx.Value(infoKey{}).(*runInfo)
	if !ok {
		return nil, Info{}, fmt.Errorf("saga: ResultOf outside a handler")
	}
	data, err := ri.j.eventData(ctx, ri.Flow, ri.Version, ri.ID, step, PhaseDone)
	return data, ri.Info, err
}
