package saga

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/choreo-go/choreo/saga/internal/engine"
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

func infoOf(i engine.Info) Info {
	return Info{Flow: i.Flow, Version: i.Version, ID: i.ID, Step: i.Step, Phase: Phase(i.Phase), Attempt: i.Attempt}
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

// InfoFrom returns the Info of the handler call ctx belongs to.
func InfoFrom(ctx context.Context) (Info, bool) {
	i, ok := engine.InfoFrom(ctx)
	return infoOf(i), ok
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
	data, info, err := engine.InputData(ctx)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("saga: input of %s/%s: %w", info.Flow, info.ID, err)
	}
	return v, nil
}
