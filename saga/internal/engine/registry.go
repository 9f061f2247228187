package engine

import (
	"sort"

	"github.com/choreo-go/choreo/saga/describe"

	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/internal/wire"
)

// Flow versions side by side.
//
// A saga runs to its end on the version it started with: its events,
// commands and timers carry the version in their subjects, and each
// version's steps have consumers of their own, so a version 1 trigger
// reaches a version 1 handler and a version 2 trigger a version 2 handler.
// The registry (the wire.FlowsBucket key-value bucket) holds what runners serve
// (each registers the definitions it runs when it starts) and what an
// operator decided about a version (retiring it), which Start obeys.

// FlowsBucket is the key-value bucket of choreo's flow registry: under
// def.<flow>.v<N> the definitions runners serve, under status.<flow>.v<N>
// the versions an operator retired.
const FlowsBucket = wire.FlowsBucket

// versionMark is what the registry holds under status.<flow>.v<N>.
type versionMark struct {
	Status VersionStatus `json:"status"`
	Reason string        `json:"reason,omitempty"`
	Since  time.Time     `json:"since"`
}

func describeFlow(f *flowDef) describe.Flow {
	fi := describe.Flow{Name: f.name, Version: f.version, Input: f.inputType, StartedBy: slices.Clone(f.starters), Deadline: f.deadline}
	for _, d := range f.steps {
		fi.Steps = append(fi.Steps, describe.Step{Name: d.name, Position: d.pos, Kind: d.kind, Owner: d.owner, Undo: d.undo, EventType: d.eventType, Timeout: d.timeout,
			WaitsOn: d.waitOn, Wait: d.waitFor, OnTopic: d.onTopic, OnField: d.onField, InputFrom: inputFrom(d)})
		if d.child != nil {
			st := &fi.Steps[len(fi.Steps)-1]
			st.Child, st.ChildVersion = d.child.name, d.child.version
		}
	}
	for _, a := range f.attrs {
		fi.Attrs = append(fi.Attrs, describe.Attr{Name: a.name, Kind: string(a.kind), Step: a.Source()})
	}
	return fi
}

// inputFrom is describe.Step.InputFrom for d: "" when its input is the
// chain's (so a step declared InputFrom the step just before it is
// described as one declared without).
func inputFrom(d *stepDef) string {
	switch {
	case d.chained:
		return ""
	case d.source == nil:
		return describe.FromFlow
	}
	return d.source.name
}

// Info describes the flow version as the registry holds it.
func (f *flowDef) Describe() describe.Flow { return describeFlow(f) }

func defKey(flow string, version int) string { return wire.DefKey(flow, version) }

func statusKey(flow string, version int) string {
	return "status." + flow + "." + wire.Version(version)
}

// registry is a client's view of the flows bucket: the status of the
// versions it starts, read at most once a statusTTL each. The statuses read
// are shared by every client of the process on the same bucket,
// so retiring refuses the version at once to every starter in its process.
type registry struct {
	kv jetstream.KeyValue
	*statusCache
}

// statusCache caches what was read of the versions' statuses.
type statusCache struct {
	mu     sync.Mutex
	marks  map[string]registryMark // by status key
	warned time.Time
}

type registryMark struct {
	mark versionMark // zero Status: active
	at   time.Time
}

// note records a status this process just wrote: its starters obey it at
// once.
func (s *statusCache) note(key string, m versionMark) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marks[key] = registryMark{mark: m, at: time.Now()}
}

// sharedStatuses holds the statuses of each flows bucket this process reads, by
// the bucket's identity (bucketID).
var sharedStatuses = struct {
	sync.Mutex
	by map[string]*statusCache
}{by: map[string]*statusCache{}}

// newRegistry returns the registry over kv, with the statuses shared by
// the clients of this process on the same bucket. A bucket that cannot
// be told apart from another gets statuses of its own.
func newRegistry(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue) *registry {
	id := bucketID(ctx, nc, kv)
	sharedStatuses.Lock()
	defer sharedStatuses.Unlock()
	st := sharedStatuses.by[id]
	if st == nil || id == "" {
		st = &statusCache{marks: map[string]registryMark{}}
		if id != "" {
			sharedStatuses.by[id] = st
		}
	}
	return &registry{kv: kv, statusCache: st}
}

// bucketID names a flows bucket: the cluster (or the server, alone) it
// lives in, and when its stream was created; "" when the broker does not
// say.
func bucketID(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue) string {
	where := nc.ConnectedClusterName()
	if where == "" {
		where = nc.ConnectedServerId()
	}
	st, err := kv.Status(ctx)
	if err != nil || where == "" {
		return ""
	}
	si, ok := st.(interface{ StreamInfo() *jetstream.StreamInfo })
	if !ok || si.StreamInfo() == nil {
		return ""
	}
	return where + "/" + si.StreamInfo().Config.Name + "/" + si.StreamInfo().Created.UTC().Format(time.RFC3339Nano)
}

// statusTTL is how long Start trusts what it read of a version's status:
// a retirement takes effect within it.
const statusTTL = time.Second

// openRegistry opens (or, with the right, creates) the flows bucket.
func openRegistry(ctx context.Context, js jetstream.JetStream, o options) (*registry, error) {
	storage := jetstream.FileStorage
	if o.memory {
		storage = jetstream.MemoryStorage
	}
	kv, err := jsutil.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      wire.FlowsBucket,
		Description: "choreo: the flow versions runners serve, and those retired",
		History:     8,
		Storage:     storage,
		Replicas:    o.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: bucket %s: %w", wire.FlowsBucket, notProvisioned(js.Conn(), "KV_"+wire.FlowsBucket, err))
	}
	return newRegistry(ctx, js.Conn(), kv), nil
}

// Attestations.
//
// A runner registers each definition it serves under a key of its own:
// def.<flow>.v<N>.<owner>, one for each owner of the steps it runs (the
// identity that owns them: access.Permissions lets only that identity
// write the key). The registry's word on a flow version is then what its
// participants agree on (agree): a participant that writes a lie can make
// the registry show nothing for the version, and the doctor name the
// disagreement, but never show its lie as the flow's definition.

// unowned is the attester of the steps that declare no owner (an
// unauthenticated setup): not a token an owner can have.
const unowned = "_"

// attestKey is the key under which attester registers a flow version.
func attestKey(flow string, version int, attester string) string {
	return defKey(flow, version) + "." + attester
}

// registered is what the registry says of one flow version: the
// definition its attesters agree on (ok), or why there is none.
type registered struct {
	flow    string
	version int
	def     describe.Flow
	ok      bool
	problem string
}

// agree decides what the attestations of one flow version (by attester)
// say: the definition every attester registered, byte for byte once
// checked, when each attester owns a step of it. Anything else is a
// problem: an attestation that is no definition a runner makes, one by an
// attester that owns no step of what it attests, two attesters that
// disagree. Owners that have not attested (their runners not started) are
// listed in the definition's NotAttestedBy.
func agreedDefinition(flow string, version int, atts map[string][]byte) registered {
	r := registered{flow: flow, version: version}
	key := defKey(flow, version)
	byValue := map[string][]string{}
	var values []string
	defs := map[string]describe.Flow{}
	for _, who := range sortedKeys(atts) {
		var fi describe.Flow
		if err := json.Unmarshal(atts[who], &fi); err != nil {
			r.problem = fmt.Sprintf("%s registered something that is not a definition (%v)", who, err)
			return r
		}
		fi.AttestedBy, fi.NotAttestedBy = nil, nil
		if err := fi.CheckRegistered(key); err != nil {
			r.problem = fmt.Sprintf("%s registered a definition no runner makes (%v)", who, err)
			return r
		}
		if !slices.Contains(owners(fi), who) {
			r.problem = fmt.Sprintf("%s registered a definition in which it owns no step", who)
			return r
		}
		canon, _ := json.Marshal(fi)
		if byValue[string(canon)] == nil {
			values = append(values, string(canon))
		}
		byValue[string(canon)] = append(byValue[string(canon)], who)
		defs[string(canon)] = fi
	}
	if len(values) == 0 {
		r.problem = "no participant registered it"
		return r
	}
	if len(values) > 1 {
		var groups []string
		for i, v := range values {
			groups = append(groups, fmt.Sprintf("definition %c by %s", 'A'+rune(min(i, 25)), strings.Join(byValue[v], ", ")))
		}
		r.problem = "its participants registered different definitions: " + strings.Join(groups, "; ")
		return r
	}
	r.def, r.ok = defs[values[0]], true
	r.def.AttestedBy = byValue[values[0]]
	for _, o := range owners(r.def) {
		if !slices.Contains(r.def.AttestedBy, o) {
			r.def.NotAttestedBy = append(r.def.NotAttestedBy, o)
		}
	}
	return r
}

// owners are the attesters a definition names: its steps' owners, and
// unowned for steps that declare none; sorted.
func owners(fi describe.Flow) []string {
	var out []string
	for _, s := range fi.Steps {
		o := s.Owner
		if o == "" {
			o = unowned
		}
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
