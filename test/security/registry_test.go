package security_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/ops"
)

// A participant that lies about a flow's definition in the registry (owners
// of two steps swapped, a step given to another service, a one-year
// deadline, the flow started by another) cannot make the tools show its
// lie: it may write only its own attestation, the tools list a definition
// only when its participants agree, and the doctor names the disagreement.
func TestRegistryLieIsNotShown(t *testing.T) {
	s := theShop(t)
	ctx, cancel := long()
	defer cancel()
	before := registered(t, s.Deps.Ops, "order", 2)
	if !slices.Contains(before.AttestedBy, "payment") || !slices.Contains(before.AttestedBy, "inventory") {
		t.Fatalf("order v2 attested by %v, want its participants", before.AttestedBy)
	}

	pay := as(t, s, "payment")
	kv, err := pay.js.KeyValue(ctx, access.FlowsBucket)
	if err != nil {
		t.Fatal(err)
	}
	own, err := kv.Get(ctx, "def.order.v2.payment")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := long()
		defer cancel()
		if _, err := kv.Put(ctx, "def.order.v2.payment", own.Value()); err != nil {
			t.Errorf("restore payment's attestation: %v", err)
		}
	})
	lie := before
	lie.AttestedBy, lie.NotAttestedBy = nil, nil
	lie.Steps = slices.Clone(before.Steps)
	for i, st := range lie.Steps {
		switch st.Owner {
		case "payment":
			lie.Steps[i].Owner = "inventory"
		case "inventory":
			lie.Steps[i].Owner = "payment"
		case "billing":
			lie.Steps[i].Owner = "payment"
		}
	}
	lie.Deadline = 365 * 24 * time.Hour
	lie.StartedBy = []string{"gateway"}
	b, err := json.Marshal(lie)
	if err != nil {
		t.Fatal(err)
	}
	// Another participant's key, and the registry's old unattested key, are
	// refused.
	for _, subject := range []string{"$KV." + access.FlowsBucket + ".def.order.v2.inventory", "$KV." + access.FlowsBucket + ".def.order.v2"} {
		if err := pay.nc.Publish(subject, b); err != nil {
			t.Fatal(err)
		}
		pay.refused(t, subject)
	}
	// Its own key it may write: the lie is stored.
	if _, err := kv.Put(ctx, "def.order.v2.payment", b); err != nil {
		t.Fatal(err)
	}

	flows, err := s.Deps.Ops.Flows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flows {
		if f.Name == "order" && f.Version == 2 {
			t.Fatalf("Flows lists order v2 while payment lies about it: %+v", f)
		}
	}
	found := false
	fs, err := s.Deps.Ops.Diagnose(ctx, ops.DiagnoseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Kind == "registry" && f.Flow == "order" && strings.Contains(f.What, "v2") && strings.Contains(f.What, "payment") {
			found = true
			t.Logf("doctor: %s", f.What)
		}
	}
	if !found {
		t.Errorf("the doctor does not report payment's lie: %+v", fs)
	}
	vs, err := s.Deps.Ops.Versions(ctx, "order")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Version == 2 && v.Registered {
			t.Errorf("Versions says order v2's definition is registered while its participants disagree")
		}
	}
}

// registered is the registry's agreed definition of flow version v.
func registered(t *testing.T, op *ops.Client, flow string, v int) describe.Flow {
	t.Helper()
	ctx, cancel := long()
	defer cancel()
	flows, err := op.Flows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flows {
		if f.Name == flow && f.Version == v {
			return f
		}
	}
	t.Fatalf("the registry lists no %s v%d: %v", flow, v, flows)
	return describe.Flow{}
}
