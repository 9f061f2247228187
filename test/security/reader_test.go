package security_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// The gateway's reader identity creates no consumer on choreo's streams
// (the saga stream, the timers, the dead letters, the flow registry): not
// a durable of a name of its own (forge_rogue), nor, through the API
// subject that takes the name from the request, one that would turn a
// service's durable consumer into an ephemeral one. On the domain events
// (CHOREO_EVENTS) it creates only its read model's view consumers, by
// name (view_gateway_<i>): no forge_rogue (durable, named ephemeral with a
// filter, through the nameless subject), no ordered consumer; and it
// reads no event dead letter. It still reads sagas (by direct gets), the
// gateway still pushes an order's end, and its read model still shows
// the order, after a rebuild too.
func TestReaderCreatesNoConsumer(t *testing.T) {
	s := theShop(t)
	gw := as(t, s, "gateway")
	admin := as(t, s, shop.Admin)

	ctx, cancel := short()
	defer cancel()
	if _, err := gw.js.CreateOrUpdateConsumer(ctx, access.StreamName, jetstream.ConsumerConfig{
		Durable: "forge_rogue", AckPolicy: jetstream.AckExplicitPolicy}); err == nil {
		t.Fatal("the reader created a durable consumer")
	}
	gw.refused(t, "$JS.API.CONSUMER.CREATE.CHOREO.forge_rogue")
	// Nor on choreo's other streams, the flow registry's included (it
	// reads the registry by direct gets).
	others := []string{access.TimerStream, access.DeadLetterStream, "KV_" + access.FlowsBucket, events.Stream, events.DeadLetterStream}
	for _, st := range others {
		ctx, cancel := short()
		if _, err := gw.js.CreateOrUpdateConsumer(ctx, st, jetstream.ConsumerConfig{
			Durable: "forge_rogue", AckPolicy: jetstream.AckExplicitPolicy}); err == nil {
			t.Errorf("the reader created a durable consumer on %s", st)
		}
		cancel()
		gw.refused(t, "$JS.API.CONSUMER.CREATE."+st+".forge_rogue")
	}
	// A named ephemeral with a filter on the events, and an ordered
	// consumer (a name the library makes up): refused too.
	ctx, cancel = short()
	defer cancel()
	if _, err := gw.js.CreateOrUpdateConsumer(ctx, events.Stream, jetstream.ConsumerConfig{
		Name: "forge_rogue", FilterSubject: "events.>", AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute}); err == nil {
		t.Error("the reader created a named ephemeral consumer on the events")
	}
	gw.refused(t, "$JS.API.CONSUMER.CREATE."+events.Stream+".forge_rogue.events.>")
	for _, st := range []string{events.Stream, events.DeadLetterStream} {
		ctx, cancel := short()
		if _, err := gw.js.OrderedConsumer(ctx, st, jetstream.OrderedConsumerConfig{}); err == nil {
			t.Errorf("the reader created an ordered consumer on %s", st)
		}
		cancel()
	}
	// The nameless create subject on the events, naming a group's
	// consumer (which would make it an ephemeral of the reader's) and
	// forge_rogue.
	for _, name := range []string{events.ConsumerName("notification", schemas.TopicOrderPlaced), "forge_rogue"} {
		req, _ := json.Marshal(map[string]any{"stream_name": events.Stream, "config": map[string]any{
			"name": name, "ack_policy": "none", "inactive_threshold": int64(time.Second), "filter_subject": "events.nothing.>"}})
		if err := gw.nc.PublishRequest("$JS.API.CONSUMER.CREATE."+events.Stream, gw.nc.NewRespInbox(), req); err != nil {
			t.Fatal(err)
		}
		gw.refused(t, "$JS.API.CONSUMER.CREATE."+events.Stream)
	}
	// No event dead letter's payload: no direct get, no message get.
	for _, subj := range []string{"$JS.API.DIRECT.GET." + events.DeadLetterStream, "$JS.API.STREAM.MSG.GET." + events.DeadLetterStream} {
		if err := gw.nc.PublishRequest(subj, gw.nc.NewRespInbox(), []byte(`{"seq":1}`)); err != nil {
			t.Fatal(err)
		}
		gw.refused(t, subj)
	}

	ctx, cancel = long()
	defer cancel()
	victim, err := admin.js.Consumer(ctx, access.StreamName, "order_v1_charge_do")
	if err != nil {
		t.Fatal(err)
	}
	cfg := victim.CachedInfo().Config
	cfg.Durable, cfg.Name, cfg.InactiveThreshold = "", "order_v1_charge_do", time.Second
	cfg.FilterSubjects, cfg.FilterSubject = nil, "choreo.log.nothing.>"
	req, _ := json.Marshal(map[string]any{"stream_name": access.StreamName, "config": cfg})
	legacy := "$JS.API.CONSUMER.CREATE.CHOREO"
	if err := gw.nc.PublishRequest(legacy, gw.nc.NewRespInbox(), req); err != nil {
		t.Fatal(err)
	}
	gw.refused(t, legacy)
	ctx, cancel = short()
	defer cancel()
	if _, err := gw.js.OrderedConsumer(ctx, access.StreamName, jetstream.OrderedConsumerConfig{}); err == nil {
		t.Fatal("the reader created an ordered consumer")
	}

	// Nothing was created or changed.
	ctx, cancel = long()
	defer cancel()
	for _, st := range append(others, access.StreamName) {
		if _, err := admin.js.Consumer(ctx, st, "forge_rogue"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatalf("forge_rogue on %s: %v, want not found", st, err)
		}
	}
	// On the events, the groups' consumers and the gateway's views alone.
	groups := events.ConsumerName("notification", schemas.TopicOrderPlaced)
	evs, err := admin.js.Stream(ctx, events.Stream)
	if err != nil {
		t.Fatal(err)
	}
	names := evs.ConsumerNames(ctx)
	for name := range names.Name() {
		if !strings.Contains(name, "__") && !strings.HasPrefix(name, "view_gateway_") && !strings.HasSuffix(name, "_on") {
			t.Errorf("a consumer %q on the events that is neither a group's nor the gateway's view", name)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	if c, err := admin.js.Consumer(ctx, events.Stream, groups); err != nil || c.CachedInfo().Config.Durable == "" {
		t.Fatalf("the group's consumer %s: %v", groups, err)
	}
	time.Sleep(1500 * time.Millisecond) // past the inactivity the rogue update asked for
	if c, err := admin.js.Consumer(ctx, access.StreamName, "order_v1_charge_do"); err != nil {
		t.Fatalf("the service's consumer is gone: %v", err)
	} else if got := c.CachedInfo().Config; got.Durable == "" || got.FilterSubject == "choreo.log.nothing.>" {
		t.Fatalf("the service's consumer was changed: %+v", got)
	}

	// The reader still reads: an order ends, the gateway pushes it, and the
	// reader's own client lists it and reads its timeline.
	base := "http://" + s.HTTPAddr
	cust := shoptest.Register(t, base, "Ada", "FR")
	id := shoptest.PlaceOrder(t, base, cust, "4242424242424242", shoptest.Item("sku-mug", 1))
	shoptest.AwaitStatus(t, base, cust, id, "confirmed")
	if s.MetricsAddr != "" {
		// The admin's rebuild replays the events through another view
		// consumer of the gateway's, and the order is still there.
		if code, res := shoptest.Call(t, "POST", "http://"+s.MetricsAddr+"/admin/rebuild", nil); code != 200 {
			t.Fatalf("rebuild: %d %v", code, res)
		}
		shoptest.AwaitStatus(t, base, cust, id, "confirmed")
	}
	ctx, cancel = long()
	defer cancel()
	c, err := saga.Open(ctx, gw.js)
	if err != nil {
		t.Fatal(err)
	}
	o, err := ops.Open(ctx, gw.js)
	if err != nil {
		t.Fatal(err)
	}
	if flows, err := o.Flows(ctx); err != nil || len(flows) == 0 {
		t.Fatalf("the reader reads no flow from the registry: %v %v", flows, err)
	}
	watch, err := c.Watch(ctx, schemas.OrderFlow)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := c.Timeline(ctx, schemas.OrderFlow, id)
	if err != nil || len(tl) < 3 {
		t.Fatalf("timeline: %d events, %v", len(tl), err)
	}
	list, err := c.List(ctx, schemas.OrderFlow, saga.StatusCompleted)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, st := range list {
		found = found || st.ID == id
	}
	if !found {
		t.Fatalf("the reader's list of completed orders has no %s", id)
	}
	id2 := shoptest.PlaceOrder(t, base, cust, "4242424242424242", shoptest.Item("sku-mug", 1))
	for st := range watch {
		if st.ID == id2 && st.Status.Terminal() {
			return
		}
	}
	t.Fatalf("the reader's watch did not see %s end: %v", id2, context.Cause(ctx))
}
