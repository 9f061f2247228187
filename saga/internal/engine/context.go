package engine

import (
	"context"
	"fmt"

	"github.com/choreo-go/choreo/internal/wire"
)

type infoKey struct{}

type runInfo struct {
	Info
	j     *journal
	waits bool // the step is completed later: its action may return ErrLater
}

// CompletionToken returns the token that completes the step whose action
// ctx belongs to, when the step is completed later (WaitsFor): hand it to
// whoever will report the outcome, then return ErrLater. It is "" outside
// such an action.
func CompletionToken(ctx context.Context) string {
	ri, ok := ctx.Value(infoKey{}).(*runInfo)
	if !ok || !ri.waits || ri.Phase != PhaseAction {
		return ""
	}
	return tokenOf(ri.Flow, ri.Version, ri.ID, ri.Step, ri.Attempt)
}

// InfoFrom returns the Info of the handler call ctx belongs to.
func InfoFrom(ctx context.Context) (Info, bool) {
	ri, ok := ctx.Value(infoKey{}).(*runInfo)
	if !ok {
		return Info{}, false
	}
	return ri.Info, true
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
