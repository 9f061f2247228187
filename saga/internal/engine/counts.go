package engine

import (
	"github.com/choreo-go/choreo/internal/wire"

	"context"
	"fmt"
)

// StepCount says how many sagas of a flow version stand where at one step:
// what an operator's drawing of the flow overlays on the step.
type StepCount struct {
	Step string `json:"step"`
	// Running counts the sagas whose step is triggered, with no outcome
	// yet, and a runner of the version attached to it; Unserved those whose
	// step no runner of the version serves now (State's Unserved): they
	// wait for a service to start rather than for one to finish.
	Running  int `json:"running"`
	Unserved int `json:"unserved"`
	// Waiting counts the steps completed later that wait on the outside
	// world (a customer, a carrier, a child saga), or for their next
	// attempt.
	Waiting int `json:"waiting"`
	// Completed, Failed and Unknown count the step's action outcomes
	// (StepCompleted, StepFailed, StepUnknown) not yet undone.
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Unknown   int `json:"unknown"`
	// Compensating counts compensations due or running; Compensated those
	// done; Parked those out of retries (the saga is compensation_failed).
	Compensating int `json:"compensating"`
	Compensated  int `json:"compensated"`
	Parked       int `json:"parked"`
}

// FlowCounts counts the sagas of one flow version: by status, and per step
// (StepCount).
type FlowCounts struct {
	Flow    string         `json:"flow"`
	Version int            `json:"version"`
	Sagas   map[Status]int `json:"sagas"`
	// Steps are in the order of the definition: the registered one when a
	// runner registered the version, else the order the sagas' states
	// list them.
	Steps []StepCount `json:"steps"`
}

// StepCounts counts, per step, where the sagas of version version of flow
// f stand. Like List, which it is built on, it reads the newest event of
// every saga of the flow: an operator's call (a console polls it), not
// one per request. Whether a running step is served is asked once per step,
// not once per saga. It returns ErrInvalidFlow for a bad flow name or
// version, and ErrNotFound for a version no runner registered and no saga
// ran on.
func (c *Client) StepCounts(ctx context.Context, f FlowRef, version int) (*FlowCounts, error) {
	if f == nil || !wire.Token(flowName(f)) || version < 1 {
		return nil, fmt.Errorf("%w: bad flow name or version", ErrInvalidFlow)
	}
	flow := flowName(f)
	out := &FlowCounts{Flow: flow, Version: version, Sagas: map[Status]int{}}
	index := map[string]int{}
	add := func(step string) *StepCount {
		i, ok := index[step]
		if !ok {
			i = len(out.Steps)
			index[step] = i
			out.Steps = append(out.Steps, StepCount{Step: step})
		}
		return &out.Steps[i]
	}
	// The registered definition orders the steps and lists those no saga
	// reached; a registry that cannot be read leaves the sagas' order.
	if regs, err := c.registered(ctx, flow); err == nil {
		for _, r := range regs {
			if r.ok && r.version == version {
				for _, s := range r.def.Steps {
					add(s.Name)
				}
			}
		}
	}
	sagas, err := c.List(ctx, f)
	if err != nil {
		return nil, err
	}
	served := map[string]bool{}
	for _, st := range sagas {
		if st.Version != version {
			continue
		}
		out.Sagas[st.Status]++
		for _, s := range st.Steps {
			n := add(s.Name)
			switch s.Status {
			case StepWaiting:
				n.Waiting++
			case StepRunning:
				if !s.WaitUntil.IsZero() {
					n.Waiting++ // its next attempt is its timer's
					break
				}
				ok, seen := served[s.Name]
				if !seen {
					ok = c.served(ctx, flow, version, s.Name)
					served[s.Name] = ok
				}
				if ok {
					n.Running++
				} else {
					n.Unserved++
				}
			case StepCompleted:
				n.Completed++
			case StepFailed:
				n.Failed++
			case StepUnknown:
				n.Unknown++
			case StepCompensating:
				n.Compensating++
			case StepCompensated:
				n.Compensated++
			case StepCompensationFailed:
				n.Parked++
			}
		}
	}
	if len(out.Steps) == 0 {
		return nil, fmt.Errorf("%w: flow %s v%d: no runner registered it and no saga ran on it", ErrNotFound, flow, version)
	}
	return out, nil
}
