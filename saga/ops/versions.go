package ops

import (
	"context"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/internal/engine"
)

// VersionStatus is whether new sagas may start on a flow version.
type VersionStatus string

// Version statuses.
const (
	VersionActive   VersionStatus = "active"   // sagas start on it
	VersionDraining VersionStatus = "draining" // no new sagas; those in flight finish
	VersionRetired  VersionStatus = "retired"  // no new sagas; those in flight were compensated
	// VersionDrained is a draining version with no saga left (the report's
	// Drained says since when): its runners may go.
	VersionDrained VersionStatus = "drained"
)

// RetireMode is what Retire does with a version's sagas in flight.
type RetireMode string

// Retire modes.
const (
	// Drain refuses new sagas of the version and lets those in flight
	// finish on it: keep its runners until Versions reports none left.
	Drain RetireMode = "drain"
	// CompensateInFlight refuses new sagas of the version and cancels every
	// running saga of it that has not passed its pivot: they compensate,
	// on the version's runners, with the reason given. Sagas past their
	// pivot can only go forward and are left to finish.
	CompensateInFlight RetireMode = "compensate"
)

// VersionReport is where one version of a flow stands.
type VersionReport struct {
	Flow    string        `json:"flow"`
	Version int           `json:"version"`
	Status  VersionStatus `json:"status"`
	Reason  string        `json:"reason,omitempty"`
	Since   time.Time     `json:"since,omitzero"`
	// Drained is when a draining version's last saga ended (or, when none
	// was left, when the drain began): its Status then reads
	// VersionDrained, and its runners may go.
	Drained time.Time `json:"drained,omitzero"`
	// Registered says a runner registered this version's definition.
	Registered bool `json:"registered"`
	// Unserved lists the steps no runner is attached to now: sagas that
	// reach them wait.
	Unserved []string `json:"unserved,omitempty"`
	// Sagas counts the version's sagas by status; InFlight lists those not
	// ended (running, compensating, parked), oldest first.
	Sagas    map[saga.Status]int `json:"sagas"`
	InFlight []string            `json:"in_flight,omitempty"`
	// Forward lists, after Retire with CompensateInFlight, the sagas that
	// passed their pivot and are left to finish on the version's runners.
	Forward []string `json:"forward,omitempty"`
}

// Left is how many of the version's sagas have not ended: when it is 0
// after a drain, the version's runners may go.
func (v VersionReport) Left() int { return len(v.InFlight) }

func reportOf(r engine.VersionReport) VersionReport {
	out := VersionReport{Flow: r.Flow, Version: r.Version, Status: VersionStatus(r.Status), Reason: r.Reason, Since: r.Since, Drained: r.Drained,
		Registered: r.Registered, Unserved: r.Unserved, InFlight: r.InFlight, Forward: r.Forward, Sagas: sagas(r.Sagas)}
	return out
}

// Versions reports every version of the flow that the registry or the
// saga log knows: its status, whether runners serve it, and its sagas. It
// reads every saga of the flow (as saga's List does). It returns
// saga.ErrInvalidFlow for a bad flow name.
func (c *Client) Versions(ctx context.Context, flow string) ([]VersionReport, error) {
	rs, err := c.e.Versions(ctx, engine.Named(flow))
	out := make([]VersionReport, len(rs))
	for i, r := range rs {
		out[i] = reportOf(r)
	}
	return out, err
}

// Retire stops new sagas of one version of the flow, as an operator's
// explicit act. saga.Start refuses the version with saga.ErrRetired (it
// never starts another version in its place): at once in this process
// (every client connected to the same server or cluster), within a second
// in others. With Drain, the sagas in flight finish on the version's
// runners; when none is left, Versions reports the version
// VersionDrained, with the time. With CompensateInFlight, every one that
// has not passed its pivot is cancelled with the reason and compensates
// on them. Either way, nothing a saga did is left uncompensated for want
// of its definition: keep the version's runners until the report's Left
// is 0. The report is made once the other processes' starts have had
// time to land (about 1.5s after the retirement), so it counts every saga
// of the version that started. It returns saga.ErrInvalidFlow for a bad
// flow name or version, saga.ErrInvalidOption for an unknown mode or an
// empty reason.
func (c *Client) Retire(ctx context.Context, flow string, version int, mode RetireMode, reason string) (*VersionReport, error) {
	r, err := c.e.Retire(ctx, engine.Named(flow), version, engine.RetireMode(mode), reason)
	if err != nil {
		return nil, err
	}
	out := reportOf(*r)
	return &out, nil
}

// Reinstate takes back a retirement: sagas start on the version again (at
// once in this process, within a second in others).
func (c *Client) Reinstate(ctx context.Context, flow string, version int) error {
	return c.e.Reinstate(ctx, engine.Named(flow), version)
}
