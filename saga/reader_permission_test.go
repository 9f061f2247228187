package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// A reader (access.Reader) tries, as an attacker would, to make a consumer
// on every stream it can look up: a durable of a name of its own, an
// ordered consumer, the subject that takes the name from the request, the
// old durable subject and a key-value watch of the flow registry. The
// broker refuses each and none is made; the reader still reads what it is
// for (Get, List, Timeline, Watch, the registry's Flows and Versions).
func TestPermissionReaderMakesNoConsumer(t *testing.T) {
	book := saga.NewStep[Ticket, Ticket]("book", saga.Owner("airline"))
	pay := saga.NewStep[Ticket, Ticket]("pay", saga.Owner("bank"), saga.Pivot())
	f := saga.MustDefine[Ticket]("desk", 1, book, pay)
	reader, err := access.Reader("clerk", f)
	if err != nil {
		t.Fatal(err)
	}
	srv := sagatest.NewServer(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "admin", Password: "a"}, {Username: "clerk", Password: "c", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: reader.Publish.Allow, Deny: reader.Publish.Deny},
			Subscribe: &server.SubjectPermission{Allow: reader.Subscribe.Allow, Deny: reader.Subscribe.Deny},
		}}}
		o.NoAuthUser = "admin" // the server's own helpers connect as the admin
	})

	// The admin provisions, a runner (as the admin) serves the flow and
	// attests it, and one saga ends.
	admin := srv.Client()
	r, err := saga.NewRunner(admin)
	if err != nil {
		t.Fatal(err)
	}
	pass := func(_ context.Context, tk Ticket) (Ticket, error) { return tk, nil }
	if err := errors.Join(
		saga.Handle(r, book, pass, func(context.Context, Ticket, Ticket) error { return nil }),
		saga.Handle(r, pay, pass, nil),
	); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	ctx := context.Background()
	if err := saga.Start(ctx, admin, f, "t1", Ticket{}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, admin, f, "t1", 20*time.Second, saga.StatusCompleted)

	_, ajs := srv.Connect()
	streams := []string{access.StreamName, access.TimerStream, access.DeadLetterStream, "KV_" + access.FlowsBucket}
	consumers := func() map[string][]string {
		out := map[string][]string{}
		for _, s := range streams {
			st, err := ajs.Stream(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			for name := range st.ConsumerNames(ctx).Name() {
				out[s] = append(out[s], name)
			}
			slices.Sort(out[s])
		}
		return out
	}
	before := consumers()

	errs := make(chan error, 256)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("clerk", "c"), nats.CustomInboxPrefix(access.InboxPrefix("clerk")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	refused := func(subject string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			if slices.ContainsFunc(seen, func(s string) bool { return strings.Contains(s, `"`+subject+`"`) }) {
				return
			}
			select {
			case err := <-errs:
				if errors.Is(err, nats.ErrPermissionViolation) {
					seen = append(seen, err.Error())
				}
			case <-deadline:
				t.Fatalf("no permissions violation for %s (saw %q)", subject, seen)
			}
		}
	}
	short := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, 500*time.Millisecond)
	}

	for _, s := range streams {
		// The stream is there for the reader to look up: the refusals
		// below are the permissions', not a missing stream.
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := js.Stream(lctx, s)
		cancel()
		if err != nil {
			t.Fatalf("the reader cannot look up %s: %v", s, err)
		}
		sctx, cancel := short()
		if _, err := js.CreateOrUpdateConsumer(sctx, s, jetstream.ConsumerConfig{Durable: "rogue", AckPolicy: jetstream.AckExplicitPolicy}); err == nil {
			t.Errorf("the reader created the durable consumer rogue on %s", s)
		}
		cancel()
		refused("$JS.API.CONSUMER.CREATE." + s + ".rogue")
		sctx, cancel = short()
		if _, err := js.CreateOrUpdateConsumer(sctx, s, jetstream.ConsumerConfig{Durable: "rogue2", FilterSubject: ">", AckPolicy: jetstream.AckExplicitPolicy}); err == nil {
			t.Errorf("the reader created the durable consumer rogue2 on %s", s)
		}
		cancel()
		refused("$JS.API.CONSUMER.CREATE." + s + ".rogue2.>")
		sctx, cancel = short()
		if _, err := js.OrderedConsumer(sctx, s, jetstream.OrderedConsumerConfig{}); err == nil {
			t.Errorf("the reader created an ordered consumer on %s", s)
		}
		cancel()
		for _, subj := range []string{"$JS.API.CONSUMER.CREATE." + s, "$JS.API.CONSUMER.DURABLE.CREATE." + s + ".rogue3"} {
			req, _ := json.Marshal(map[string]any{"stream_name": s, "config": map[string]any{"durable_name": "rogue3", "ack_policy": "explicit"}})
			if err := nc.PublishRequest(subj, nc.NewRespInbox(), req); err != nil {
				t.Fatal(err)
			}
			refused(subj)
		}
	}
	// A key-value watch is an ordered consumer too.
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	kv, err := js.KeyValue(lctx, access.FlowsBucket)
	cancel()
	if err != nil {
		t.Fatalf("the reader cannot open the registry: %v", err)
	}
	sctx, cancel := short()
	if w, err := kv.WatchAll(sctx); err == nil {
		// The watch may be made before the broker refuses its consumer:
		// what counts is that no entry arrives through it.
		select {
		case e := <-w.Updates():
			if e != nil {
				t.Errorf("the reader watched the registry: %s", e.Key())
			}
		case <-sctx.Done():
		}
		_ = w.Stop()
	}
	cancel()
	if got := consumers(); !equalConsumers(got, before) {
		t.Fatalf("the reader's attempts changed the consumers: %v, were %v", got, before)
	}

	// What a reader is for still works.
	lctx, cancel = context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := saga.Open(lctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.Get(lctx, f, "t1"); err != nil || st.Status != saga.StatusCompleted {
		t.Fatalf("get: %v %v", st, err)
	}
	if list, err := c.List(lctx, f, saga.StatusCompleted); err != nil || len(list) != 1 {
		t.Fatalf("list: %d %v", len(list), err)
	}
	if tl, err := c.Timeline(lctx, f, "t1"); err != nil || len(tl) < 3 {
		t.Fatalf("timeline: %d events, %v", len(tl), err)
	}
	watch, err := c.Watch(lctx, f)
	if err != nil {
		t.Fatal(err)
	}
	o, err := ops.Open(lctx, js)
	if err != nil {
		t.Fatal(err)
	}
	flows, err := o.Flows(lctx)
	if err != nil || len(flows) != 1 || flows[0].Name != "desk" || len(flows[0].AttestedBy) != 2 {
		t.Fatalf("flows: %+v %v", flows, err)
	}
	if vs, err := o.Versions(lctx, "desk"); err != nil || len(vs) != 1 {
		t.Fatalf("versions: %+v %v", vs, err)
	}
	if err := saga.Start(ctx, admin, f, "t2", Ticket{}); err != nil {
		t.Fatal(err)
	}
	for st := range watch {
		if st.ID == "t2" && st.Status.Terminal() {
			return
		}
	}
	t.Fatalf("the reader's watch did not see t2 end: %v", lctx.Err())
}

func equalConsumers(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
