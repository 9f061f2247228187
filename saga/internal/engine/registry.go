package engine

import (
	"github.com/choreo-go/choreo/saga/describe"

	"context"
	"fmt"
	"slices"
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
// operator decided about a version (Retire), which Start obeys.

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

func info(f *flowDef) describe.Flow {
	fi := describe.Flow{Name: f.name, Version: f.version, Input: f.inputType, StartedBy: slices.Clone(f.starters), Deadline: f.deadline}
	for _, d := range f.steps {
		fi.Steps = append(fi.Steps, describe.Step{Name: d.name, Position: d.pos, Kind: d.kind, Owner: d.owner, Undo: d.undo, EventType: d.eventType, Timeout: d.timeout})
	}
	return fi
}

// Info describes the flow version as the registry holds it.
func (f *flowDef) Info() describe.Flow { return info(f) }

func defKey(flow string, version int) string { return wire.DefKey(flow, version) }

func statusKey(flow string, version int) string {
	return "status." + flow + "." + wire.Version(version)
}

// registry is a client's view of the flows bucket: the status of the
// versions it starts, read at most once a statusTTL each. The statuses read
// are shared by every client of the process on the same bucket (statuses),
// so a Retire refuses the version at once to every starter in its process.
type registry struct {
	kv jetstream.KeyValue
	*statuses
}

// statuses caches what was read of the versions' statuses.
type statuses struct {
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
func (s *statuses) note(key string, m versionMark) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marks[key] = registryMark{mark: m, at: time.Now()}
}

// shared holds the statuses of each flows bucket this process reads, by
// the bucket's identity (bucketID).
var shared = struct {
	sync.Mutex
	by map[string]*statuses
}{by: map[string]*statuses{}}

// newRegistry returns the registry over kv, with the statuses shared by
// the clients of this process on the same bucket. A bucket that cannot
// be told apart from another gets statuses of its own.
func newRegistry(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue) *registry {
	id := bucketID(ctx, nc, kv)
	shared.Lock()
	defer shared.Unlock()
	st := shared.by[id]
	if st == nil || id == "" {
		st = &statuses{marks: map[string]registryMark{}}
		if id != "" {
			shared.by[id] = st
		}
	}
	return &registry{kv: kv, statuses: st}
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
