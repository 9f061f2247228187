package saga_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// Each search attribute is written by the identity that computes it: the
// starter those of the input, the step's owner those of its result. The
// step's owner cannot write an input attribute, nor a service of another
// flow any; and an entry the broker did take but that does not follow
// from the flow's definition (the wrong source, a saga that is not
// there) is not believed by Find or Get.
func TestSearchAttributesCannotBeForged(t *testing.T) {
	f, charge := searchFlow(t, "guarded")
	other := saga.MustDefine[Ticket]("other", 1, saga.NewStep[Ticket, Ticket]("x", saga.Owner("intruder")))
	perms, err := access.Permissions(f, other)
	must(t, err)
	users := []*server.User{{Username: "admin", Password: "a"}}
	for _, who := range []string{"shop", "payments", "intruder"} {
		p := perms[who]
		users = append(users, &server.User{Username: who, Password: who, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: p.Publish.Allow, Deny: p.Publish.Deny},
			Subscribe: &server.SubjectPermission{Allow: p.Subscribe.Allow, Deny: p.Subscribe.Deny},
		}})
	}
	srv := sagatest.NewServer(t, func(o *server.Options) { o.Users, o.NoAuthUser = users, "admin" })
	admin := srv.Client()
	ctx := context.Background()
	as := func(who string) (*saga.Client, jetstream.JetStream) {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(who, who), nats.CustomInboxPrefix(access.InboxPrefix(who)),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		must(t, err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		must(t, err)
		c, err := saga.Open(ctx, js)
		must(t, err)
		return c, js
	}
	// The owner of charge runs it under its own identity, the shop starts.
	payments, pjs := as("payments")
	r, err := saga.NewRunner(payments)
	must(t, err)
	must(t, saga.Handle(r, charge, func(_ context.Context, p Purchase) (Receipt, error) { return Receipt{Bank: "b1"}, nil },
		func(context.Context, Purchase, Receipt) error { return nil }))
	sagatest.Run(t, r)
	shop, _ := as("shop")
	must(t, saga.Start(ctx, shop, f, "g1", Purchase{Customer: "c-1", Total: 10, Country: "DE"}))
	sagatest.AwaitStatus(t, admin, f, "g1", 30*time.Second, saga.StatusCompleted)
	st, err := shop.Get(ctx, f, "g1")
	must(t, err)
	if st.Attrs["customer"] != "c-1" || st.Attrs["bank"] != "b1" {
		t.Fatalf("attrs %v: the starter's and the owner's were not both written", st.Attrs)
	}

	// Refused by the broker: payments writing an input attribute, the
	// intruder writing any attribute of the guarded flow.
	_, ijs := as("intruder")
	for who, try := range map[string]struct {
		js      jetstream.JetStream
		subject string
	}{
		"payments":  {pjs, wire.IndexSubject("guarded", "customer", wire.IndexValueString("c-evil"), "g1", wire.SagaStep)},
		"payments ": {pjs, wire.IndexSagaSubject("guarded", "g1", "customer", wire.IndexValueString("c-evil"), wire.SagaStep)},
		"intruder":  {ijs, wire.IndexSubject("guarded", "bank", wire.IndexValueString("evil"), "g1", "charge")},
	} {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := try.js.Publish(pctx, try.subject, nil)
		cancel()
		if err == nil {
			t.Errorf("%s wrote %s", who, try.subject)
		}
	}
	// Taken by the broker (the admin may write anything) but not
	// believed: the wrong source, a kind the attribute does not have, a
	// saga that does not exist.
	_, ajs := srv.Connect()
	for _, s := range []string{
		wire.IndexSubject("guarded", "customer", wire.IndexValueString("c-evil"), "g1", "charge"),
		wire.IndexSubject("guarded", "customer", wire.IndexValueNumber(7), "g1", wire.SagaStep),
		wire.IndexSubject("guarded", "customer", wire.IndexValueString("c-evil"), "ghost", wire.SagaStep),
		wire.IndexSagaSubject("guarded", "g1", "customer", wire.IndexValueString("c-evil"), "charge"),
		wire.IndexSagaSubject("guarded", "g1", "colour", wire.IndexValueString("red"), wire.SagaStep),
	} {
		_, err := ajs.Publish(ctx, s, nil)
		must(t, err)
	}
	for _, cond := range []string{"customer=c-evil", "customer=7", "bank=evil"} {
		got, err := admin.Find(ctx, f, where(t, cond))
		if err != nil || len(got) != 0 {
			t.Errorf("%s: found %v (%v), want nothing", cond, ids(got), err)
		}
	}
	got, err := admin.Find(ctx, saga.Named("guarded"), where(t, "customer=c-1"))
	if err != nil || !slices.Equal(ids(got), []string{"g1"}) {
		t.Errorf("customer=c-1: %v %v, want [g1]", ids(got), err)
	}
	st, err = admin.Get(ctx, saga.Named("guarded"), "g1")
	must(t, err)
	if want := map[string]string{"customer": "c-1", "total": "10", "country": "DE", "bank": "b1"}; !maps(st.Attrs, want) {
		t.Errorf("Get (by name) shows %v, want %v", st.Attrs, want)
	}
}

// An ended saga's attributes go with its log when its retention ends.
func TestSearchAttributesExpireWithTheSaga(t *testing.T) {
	srv := sagatest.NewServer(t)
	c := srv.Client(saga.WithRetention(time.Second))
	f, charge := searchFlow(t, "fleeting")
	r, _ := saga.NewRunner(c, saga.WithDrainTimeout(100*time.Millisecond))
	_ = saga.Handle(r, charge, func(context.Context, Purchase) (Receipt, error) { return Receipt{Bank: "b"}, nil },
		func(context.Context, Purchase, Receipt) error { return nil })
	sagatest.Run(t, r)
	ctx := context.Background()
	must(t, saga.Start(ctx, c, f, "e1", Purchase{Customer: "c-9", Total: 1, Country: "IT"}))
	_, js := srv.Connect()
	if n := left(js, t, access.IndexStream, "choreo.idx.fleeting.>"); n != 6 && n != 8 {
		t.Fatalf("%d index entries after the start, want 6 or 8 (two per attribute)", n)
	}
	sagatest.Poll(t, 30*time.Second, func() bool {
		_, err := c.Get(ctx, f, "e1")
		return errors.Is(err, saga.ErrNotFound)
	}, func() string { return "the saga is still there after its retention" })
	if n := left(js, t, access.IndexStream, "choreo.idx.fleeting.>"); n != 0 {
		t.Errorf("%d index entries left after the saga expired", n)
	}
	if got, err := c.Find(ctx, f, where(t, "customer=c-9")); err != nil || len(got) != 0 {
		t.Errorf("customer=c-9 after expiry: %v %v", ids(got), err)
	}
}
