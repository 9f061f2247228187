package ops

import (
	"context"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/internal/engine"
)

// Found is a saga an operator's search found: what a list of results, a
// bulk act's dry run or its sample show of it.
type Found struct {
	Flow      string            `json:"flow"`
	Version   int               `json:"version"`
	ID        string            `json:"id"`
	Status    saga.Status       `json:"status"`
	StartedAt time.Time         `json:"started_at"`
	Attrs     map[string]string `json:"attrs,omitempty"` // those the filter's conditions read
}

// Find returns the sagas of flow that filter selects, oldest first, as
// saga.Client.Find does: by their search attributes from the search
// index, reading only the sagas that match. It returns
// saga.ErrInvalidFlow for a bad flow name, saga.ErrInvalidOption for a
// condition on an attribute no known version of the flow declares, and
// saga.ErrNotProvisioned when there is no search index.
func (c *Client) Find(ctx context.Context, flow string, filter saga.Filter) ([]Found, error) {
	ef := engine.Filter{Flow: flow, Version: filter.Version, Step: filter.Step, Since: filter.Since, Before: filter.Before, Where: filter.Where}
	for _, s := range filter.Statuses {
		ef.Statuses = append(ef.Statuses, engine.Status(s))
	}
	sts, err := c.e.Find(ctx, engine.Named(flow), ef)
	if err != nil {
		return nil, err
	}
	out := make([]Found, len(sts))
	for i, st := range sts {
		out[i] = Found{Flow: st.Flow, Version: st.Version, ID: st.ID, Status: saga.Status(st.Status), StartedAt: st.StartedAt, Attrs: st.Attrs}
	}
	return out, nil
}
