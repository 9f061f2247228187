package ops

import (
	"context"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/internal/engine"
)

// ErrStopped is returned by Bulk when the act was stopped (StopBulk, or
// its context) before it went through every saga it selected.
var ErrStopped = engine.ErrStopped

// Filter selects sagas: by flow, version, status, the step under way,
// when they started, and conditions on search attributes.
type Filter = engine.Filter

// Cond is one condition of a Filter on a search attribute.
type Cond = engine.Cond

// Statuses converts saga statuses for Filter.Statuses.
func Statuses(ss ...saga.Status) []engine.Status {
	out := make([]engine.Status, len(ss))
	for i, s := range ss {
		out[i] = engine.Status(s)
	}
	return out
}

// ParseCond reads a condition: "customer=c-123", "total>100".
func ParseCond(s string) (Cond, error) { return engine.ParseCond(s) }

// BulkAction is what a bulk act does to each saga it selects.
type BulkAction = engine.BulkAction

// Bulk actions.
const (
	BulkCancel = engine.BulkCancel // Cancel: it compensates
	BulkRetry  = engine.BulkRetry  // RetryCompensation of a parked saga
	BulkReplay = engine.BulkReplay // ReplayDeadLetter of each of its dead letters
	BulkPause  = engine.BulkPause  // PauseSaga
	BulkResume = engine.BulkResume // ResumeSaga
)

// DefaultBulkRate is a bulk act's rate when its spec gives none, in
// sagas per second.
const DefaultBulkRate = engine.DefaultBulkRate

// BulkSpec is a bulk act: an action over every saga a filter selects, for
// a reason, at a bounded rate (sagas a second). A filter with no status
// takes those the action applies to: running and scheduled sagas for
// cancel, pause and resume, parked ones for retry.
type BulkSpec = engine.BulkSpec

// BulkRecord is a bulk act as listed: its spec, who ran it, its state
// (running, done, stopped, failed), its counts, and the sagas it skipped
// or failed with the reasons.
type BulkRecord = engine.BulkRecord

// BulkItem is what a bulk act did to one saga.
type BulkItem = engine.BulkItem

// Outcomes of a bulk act's saga, and states of a bulk act.
const (
	BulkDone    = engine.BulkDone
	BulkSkipped = engine.BulkSkipped
	BulkFailed  = engine.BulkFailed

	BulkRunning  = engine.BulkRunning
	BulkFinished = engine.BulkFinished
	BulkStopped  = engine.BulkStopped
	BulkAborted  = engine.BulkAborted
)

// BulkPlan is a bulk act's dry run: how many sagas it would act on, and a
// sample of them (the oldest).
type BulkPlan struct {
	Count  int          `json:"count"`
	Sample []BulkSample `json:"sample"`
}

// BulkSample is one saga of a plan's sample.
type BulkSample struct {
	Flow      string      `json:"flow"`
	ID        string      `json:"id"`
	Version   int         `json:"version"`
	Status    saga.Status `json:"status"`
	Steps     []string    `json:"steps,omitempty"` // the steps under way
	StartedAt time.Time   `json:"started_at"`
}

// PlanBulk is a bulk act's dry run: it counts the sagas spec selects and
// shows a sample, changing nothing. It returns saga.ErrInvalidOption for a
// bad spec.
func (c *Client) PlanBulk(ctx context.Context, spec BulkSpec) (*BulkPlan, error) {
	p, err := c.e.PlanBulk(ctx, spec)
	if err != nil {
		return nil, err
	}
	out := &BulkPlan{Count: p.Count, Sample: []BulkSample{}}
	for _, st := range p.Sample {
		s := BulkSample{Flow: st.Flow, ID: st.ID, Version: st.Version, Status: saga.Status(st.Status), StartedAt: st.StartedAt}
		for _, step := range st.Steps {
			switch step.Status {
			case engine.StepRunning, engine.StepWaiting, engine.StepCompensationFailed:
				s.Steps = append(s.Steps, step.Name)
			}
		}
		out.Sample = append(out.Sample, s)
	}
	return out, nil
}

// Bulk runs spec's action on every saga it selects, at most spec.Rate a
// second, and records the act in the flow registry as it goes (BulkActs).
// Each saga acted on gets an operator's event in its log naming who,
// when, why and the act's id; history is never rewritten. A saga the
// action no longer applies to (compensating already, not parked, not
// paused) is skipped with the reason, so running an act twice acts once.
// progress, if not nil, is called with the record after each saga. It
// stops when ctx ends or StopBulk names it, and then returns the record
// with ErrStopped. It returns saga.ErrInvalidOption for a bad spec.
func (c *Client) Bulk(ctx context.Context, spec BulkSpec, progress func(BulkRecord)) (*BulkRecord, error) {
	return c.e.Bulk(ctx, spec, progress)
}

// StartBulk is Bulk in the background: it records the act and returns its
// id at once, with wait, which waits for the act's end and returns what
// Bulk returns. The act runs until done, ctx ends, or StopBulk names it.
func (c *Client) StartBulk(ctx context.Context, spec BulkSpec, progress func(BulkRecord)) (id string, wait func() (*BulkRecord, error), err error) {
	return c.e.StartBulk(ctx, spec, progress)
}

// BulkActs lists the bulk acts recorded, newest first.
func (c *Client) BulkActs(ctx context.Context) ([]BulkRecord, error) { return c.e.BulkActs(ctx) }

// BulkAct returns one bulk act's record, or saga.ErrNotFound.
func (c *Client) BulkAct(ctx context.Context, id string) (*BulkRecord, error) {
	return c.e.BulkAct(ctx, id)
}

// StopBulk asks a running bulk act to stop, wherever it runs: it stops
// within about a second. It returns saga.ErrNotFound for an unknown id.
func (c *Client) StopBulk(ctx context.Context, id string) error { return c.e.StopBulk(ctx, id) }
