package engine

import (
	"github.com/choreo-go/choreo/saga/describe"

	"context"
	"fmt"
	"slices"
	"sync"
	"time"

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
// versions it starts, read at most once a second each.
type registry struct {
	kv jetstream.KeyValue

	mu     sync.Mutex
	marks  map[string]registryMark // by status key
	warned time.Time
}

type registryMark struct {
	mark versionMark // zero Status: active
	at   time.Time
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
	return &registry{kv: kv, marks: map[string]registryMark{}}, nil
}

// VersionStatus is whether new sagas may start on a flow version.
type VersionStatus string

// Version statuses.
const (
	VersionActive   VersionStatus = "active"   // sagas start on it
	VersionDraining VersionStatus = "draining" // no new sagas; those in flight finish
	VersionRetired  VersionStatus = "retired"  // no new sagas; those in flight were compensated
)
