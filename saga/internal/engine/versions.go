package engine

import (
	"slices"

	"github.com/choreo-go/choreo/saga/describe"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/choreo-go/choreo/internal/wire"
)

// RetireMode is what Retire does with a version's sagas in flight.
type RetireMode string

// Retire modes.
const (
	// Drain refuses new sagas of the version and lets those in flight
	// finish on it: keep its runners until Versions reports none left.
	Drain RetireMode = "drain"
	// CompensateInFlight refuses new sagas of the version and cancels every
	// running or scheduled saga of it that has not passed its pivot: they compensate,
	// on the version's runners, with the reason given. Sagas past their
	// pivot can only go forward and are left to finish.
	CompensateInFlight RetireMode = "compensate"
)

// Cancel is an operator's stop of a running saga: it compensates, with
// the reason, on the runners of its version. A scheduled saga that has not
// begun ends compensated at once: nothing of it ran. It returns ErrNotFound, or
// ErrNotRunning for a saga that ended, compensates already, or ran its
// pivot (it can only go forward). Only an identity that may append saga
// events of its own (an admin) may cancel: Permissions gives services no
// such right.
func (c *Client) Cancel(ctx context.Context, f FlowRef, id, reason string) error {
	return c.cancel(ctx, f, id, reason, "")
}

// cancel is Cancel within bulk act bulk: the event's payload is its audit.
func (c *Client) cancel(ctx context.Context, f FlowRef, id, reason, bulk string) error {
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%w: a cancellation needs a reason", ErrInvalidOption)
	}
	_, err := c.operatorAct(ctx, f, id, PhaseCancelled, c.audit(reason, bulk), func(s *State, _ time.Time) error { return s.cancel("cancelled: " + reason) })
	return err
}

// VersionReport is where a flow version stands.
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
	// Sagas counts the version's sagas by status; InFlight lists those
	// not ended (running, compensating, parked), oldest first.
	Sagas    map[Status]int `json:"sagas"`
	InFlight []string       `json:"in_flight,omitempty"`
	// Forward lists, after Retire with CompensateInFlight, the sagas that
	// passed their pivot and are left to finish on the version's runners.
	Forward []string `json:"forward,omitempty"`
}

// Left is how many of the version's sagas have not ended: when it is 0
// after a drain, the version's runners may go.
func (v VersionReport) Left() int { return len(v.InFlight) }

// Versions reports every version of flow f that the registry or the
// saga log knows: its status, whether runners serve it, and its sagas. It
// reads every saga of the flow (as List does): an operator's tool.
func (c *Client) Versions(ctx context.Context, f FlowRef) ([]VersionReport, error) {
	if f == nil || !wire.Token(flowName(f)) {
		return nil, fmt.Errorf("%w: bad flow name", ErrInvalidFlow)
	}
	flow := flowName(f)
	reports := map[int]*VersionReport{}
	get := func(v int) *VersionReport {
		if reports[v] == nil {
			reports[v] = &VersionReport{Flow: flow, Version: v, Status: VersionActive, Sagas: map[Status]int{}}
		}
		return reports[v]
	}
	defs := map[int]describe.Flow{}
	regs, err := c.registered(ctx, flow)
	if err != nil {
		return nil, err
	}
	for _, reg := range regs {
		r := get(reg.version)
		if reg.ok {
			r.Registered, defs[reg.version] = true, reg.def
		}
	}
	err = c.scanRegistry(ctx, flow, func(kind string, v int, value []byte) {
		if kind != "status" {
			return
		}
		r := get(v)
		var m versionMark
		if json.Unmarshal(value, &m) == nil && m.Status != "" {
			r.Status, r.Reason, r.Since = m.Status, m.Reason, m.Since
		}
	})
	if err != nil {
		return nil, err
	}
	sagas, err := c.List(ctx, Named(flow))
	if err != nil {
		return nil, err
	}
	lastEnd := map[int]time.Time{}
	for _, st := range sagas {
		r := get(st.Version)
		r.Sagas[st.Status]++
		if st.EndedAt.After(lastEnd[st.Version]) {
			lastEnd[st.Version] = st.EndedAt
		}
		if !st.Status.Terminal() || st.Status == StatusCompensationFailed {
			r.InFlight = append(r.InFlight, st.ID)
		}
	}
	var out []VersionReport
	for v, r := range reports {
		r.Status, r.Drained = versionStand(r.Status, r.Left(), r.Since, lastEnd[v])
		if fi, ok := defs[v]; ok {
			for _, s := range fi.Steps {
				if !c.served(ctx, flow, v, s.Name) {
					r.Unserved = append(r.Unserved, s.Name)
				}
			}
		}
		out = append(out, *r)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Version < out[b].Version })
	return out, nil
}

// scanRegistry calls fn with every status entry of flow: its kind
// ("status"), version and value.
func (c *Client) scanRegistry(ctx context.Context, flow string, fn func(kind string, version int, value []byte)) error {
	entries, err := c.registryEntries(ctx, "status."+flow+".*")
	if err != nil {
		return err
	}
	for k, value := range entries {
		parts := strings.Split(k, ".")
		if len(parts) != 3 {
			continue
		}
		if v, ok := wire.ParseVersion(parts[2]); ok {
			fn(parts[0], v, value)
		}
	}
	return nil
}

// registryEntries reads the newest value of every registry key matching
// the filters, by key, in one pass over the bucket by batched direct gets:
// no consumer, so that an identity that only reads (access.Reader) needs
// no right to create one (a right the broker cannot limit to ephemeral
// consumers). A key whose newest entry deletes or purges it is left out.
func (c *Client) registryEntries(ctx context.Context, filters ...string) (map[string][]byte, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	prefix := "$KV." + wire.FlowsBucket + "."
	type entry struct {
		seq     uint64
		value   []byte
		deleted bool
	}
	newest := map[string]entry{}
	for _, f := range filters {
		_, err := c.j.readStream(ctx, "KV_"+wire.FlowsBucket, prefix+f, 1, 0, func(m logMsg) {
			key, ok := strings.CutPrefix(m.subject, prefix)
			if !ok || newest[key].seq > m.seq {
				return
			}
			op := m.header.Get("KV-Operation")
			newest[key] = entry{seq: m.seq, value: m.data, deleted: op == "DEL" || op == "PURGE"}
		})
		if err != nil {
			return nil, fmt.Errorf("saga: flow registry: %w", err)
		}
	}
	out := map[string][]byte{}
	for k, e := range newest {
		if !e.deleted {
			out[k] = e.value
		}
	}
	return out, nil
}

// Flows lists the flow versions whose participants agree on their
// definition (describe.Flow, with who attested it), by name and version:
// for tools not compiled with the flows. A version whose participants
// registered different definitions is left out (Diagnose reports it): a
// participant that lies about a flow cannot make its lie the drawing an
// operator acts on.
func (c *Client) Flows(ctx context.Context) ([]describe.Flow, error) {
	regs, err := c.registered(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []describe.Flow
	for _, r := range regs {
		if !r.ok {
			c.opts.logger.Warn("choreo: flow version left out of the registry's list", "flow", r.flow, "version", r.version, "why", r.problem)
			continue
		}
		out = append(out, r.def)
	}
	return out, nil
}

// Retire stops new sagas of one version of flow f, as an operator's
// explicit act. Start refuses the version with ErrRetired (it never
// starts another version in its place): at once in this process (every
// client on the same connection's server or cluster), within statusTTL (a
// second) in others. With Drain, the sagas in flight finish on the
// version's runners; with CompensateInFlight, every one that has not
// passed its pivot is cancelled with the reason and compensates on them.
// Either way, nothing a saga did is left uncompensated for want of its
// definition: keep the version's runners until the report's Left is 0
// (Versions tells again later; a drained version then reads
// VersionDrained). It returns the version's report, made once the starts
// that had not heard of the retirement had time to land (statusTTL and a
// margin, startSettle): it counts every saga of the version that started.
func (c *Client) Retire(ctx context.Context, f FlowRef, version int, mode RetireMode, reason string) (*VersionReport, error) {
	if f == nil || !wire.Token(flowName(f)) || version < 1 {
		return nil, fmt.Errorf("%w: bad flow name or version", ErrInvalidFlow)
	}
	if mode != Drain && mode != CompensateInFlight {
		return nil, fmt.Errorf("%w: retire mode %q: want %q or %q", ErrInvalidOption, mode, Drain, CompensateInFlight)
	}
	if strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("%w: a retirement needs a reason", ErrInvalidOption)
	}
	flow := flowName(f)
	mark := versionMark{Status: VersionDraining, Reason: reason, Since: time.Now().UTC()}
	if mode == CompensateInFlight {
		mark.Status = VersionRetired
	}
	value, _ := json.Marshal(mark)
	pctx, cancel := withTimeout(ctx)
	_, err := c.reg.kv.Put(pctx, statusKey(flow, version), value)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("saga: retire %s v%d: %w", flow, version, err)
	}
	c.reg.note(statusKey(flow, version), mark)
	// Starters elsewhere read the status at most a statusTTL late, and
	// publish a start within a statusTTL of reading it (Start): past this,
	// every saga of the version that will ever start has.
	settled := time.Now().Add(statusTTL + startSettle)
	var forward []string
	done := map[string]bool{}
	for pass := range 2 {
		if pass == 1 {
			select {
			case <-time.After(time.Until(settled)):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if mode == CompensateInFlight {
			if err := c.cancelInFlight(ctx, flow, version, reason, done, &forward); err != nil {
				return nil, err
			}
		}
	}
	reports, err := c.Versions(ctx, f)
	if err != nil {
		return nil, err
	}
	for _, r := range reports {
		if r.Version == version {
			r.Forward = forward
			return &r, nil
		}
	}
	return &VersionReport{Flow: flow, Version: version, Status: mark.Status, Reason: reason, Since: mark.Since, Sagas: map[Status]int{}, Forward: forward}, nil
}

// startSettle is how long, past statusTTL, Retire waits for the starts of
// other processes that had not heard of it to reach the broker.
const startSettle = 500 * time.Millisecond

// cancelInFlight cancels every running saga of the flow's version not in
// done, for Retire with CompensateInFlight; those past their pivot go to
// forward.
func (c *Client) cancelInFlight(ctx context.Context, flow string, version int, reason string, done map[string]bool, forward *[]string) error {
	sagas, err := c.List(ctx, Named(flow), StatusRunning, StatusScheduled)
	if err != nil {
		return err
	}
	for _, st := range sagas {
		if st.Version != version || done[st.ID] {
			continue
		}
		done[st.ID] = true
		err := c.Cancel(ctx, Named(flow), st.ID, fmt.Sprintf("flow %s v%d retired: %s", flow, version, reason))
		switch {
		case errors.Is(err, ErrNotRunning) && st.pivoted():
			*forward = append(*forward, st.ID)
		case errors.Is(err, ErrNotRunning), errors.Is(err, ErrNotFound):
			// ended, or compensating already, meanwhile
		case err != nil:
			return fmt.Errorf("saga: retire %s v%d: cancel %s: %w", flow, version, st.ID, err)
		}
	}
	return nil
}

// Reinstate takes back a retirement: sagas start on the version again (at
// once in this process, within statusTTL in others).
func (c *Client) Reinstate(ctx context.Context, f FlowRef, version int) error {
	if f == nil || !wire.Token(flowName(f)) || version < 1 {
		return fmt.Errorf("%w: bad flow name or version", ErrInvalidFlow)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := c.reg.kv.Delete(ctx, statusKey(flowName(f), version)); err != nil {
		return fmt.Errorf("saga: reinstate %s v%d: %w", flowName(f), version, err)
	}
	c.reg.note(statusKey(flowName(f), version), versionMark{})
	return nil
}

// registry reads the attestations of flow ("" for every flow) and says
// what the registry holds of each version, by flow and version.
func (c *Client) registered(ctx context.Context, flow string) ([]registered, error) {
	filter := "def.>"
	if flow != "" {
		filter = "def." + flow + ".*.*"
	}
	entries, err := c.registryEntries(ctx, filter)
	if err != nil {
		return nil, err
	}
	type fv struct {
		flow    string
		version int
	}
	atts := map[fv]map[string][]byte{}
	for k, value := range entries {
		t, ok := wire.Tokens(k, 4)
		if !ok {
			continue // a key of the old, unattested form: nobody's word
		}
		v, ok := wire.ParseVersion(t[2])
		if !ok || !wire.Token(t[1]) || (t[3] != unowned && !wire.Token(t[3])) {
			continue
		}
		key := fv{t[1], v}
		if atts[key] == nil {
			atts[key] = map[string][]byte{}
		}
		atts[key][t[3]] = value
	}
	var out []registered
	for key, a := range atts {
		out = append(out, agreedDefinition(key.flow, key.version, a))
	}
	slices.SortFunc(out, func(a, b registered) int {
		if a.flow != b.flow {
			return strings.Compare(a.flow, b.flow)
		}
		return a.version - b.version
	})
	return out, nil
}
