// Package security_test attacks the shop's embedded server the ways the
// security issue names, each with the identity an attacker could hold, and
// checks that the broker refuses and that nothing changed.
package security_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// running is a shop on an embedded server, run by the test.
type running struct {
	*shop.Shop
	dir     string
	stop    func()
	refused *refusals
}

// refusals records what the broker refused the shop's own services: the
// shop logs each refusal a connection reports as a warning "nats".
type refusals struct {
	mu   sync.Mutex
	seen []string
}

func (r *refusals) Enabled(context.Context, slog.Level) bool { return true }
func (r *refusals) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *refusals) WithGroup(string) slog.Handler            { return r }
func (r *refusals) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "nats" {
		return nil
	}
	line := rec.Message
	rec.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	r.mu.Lock()
	r.seen = append(r.seen, line)
	r.mu.Unlock()
	return nil
}

func (r *refusals) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// config is a shop on dir whose log goes to refused. CHOREO_KEY_FILE
// runs it with payload encryption on.
func config(dir string, refused *refusals) shop.Config {
	return shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: dir, Logger: slog.New(refused),
		MetricsAddr: "127.0.0.1:0", // the admin listener: the gateway's rebuild
		KeyFile:     os.Getenv("CHOREO_KEY_FILE")}
}

// launch starts a shop on dir, outside a test; stop ends it.
func launch(dir string) (*running, error) {
	refused := &refusals{}
	s, err := shoptest.StartShop(config(dir, refused))
	if err != nil {
		return nil, err
	}
	return &running{Shop: s.Shop, dir: dir, stop: func() { _ = s.Stop() }, refused: refused}, nil
}

// startShop runs a shop on dir until the test ends; an error of its run
// fails the test.
func startShop(t *testing.T, dir string) *running {
	t.Helper()
	refused := &refusals{}
	s := shoptest.RunShop(t, config(dir, refused))
	return &running{Shop: s.Shop, dir: dir, stop: func() { _ = s.Stop() }, refused: refused}
}

var (
	sharedOnce sync.Once
	shared     *running
	sharedErr  error
)

// theShop is one shop for the attacks, which change nothing.
func theShop(t *testing.T) *running {
	t.Helper()
	sharedOnce.Do(func() {
		if shared, sharedErr = external(); shared != nil || sharedErr != nil {
			return
		}
		dir, err := os.MkdirTemp("", "choreo-security-")
		if err != nil {
			sharedErr = err
			return
		}
		shared, sharedErr = launch(dir)
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop()
		if shared.dir != "" {
			_ = os.RemoveAll(shared.dir)
		}
	}
	os.Exit(code)
}

// conn is a connection with an identity and the errors the server reports.
type conn struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

// as connects with the named identity's seed from the shop's credentials.
func as(t *testing.T, s *running, name string) *conn {
	t.Helper()
	c := &conn{errs: make(chan error, 64)}
	c.nc = shoptest.ConnectAs(t, s.NATSURL, s.Credentials, name, c.errs, tlsOpts...)
	c.js, _ = jetstream.New(c.nc)
	return c
}

// refused waits for the server to refuse a publish to subject.
func (c *conn) refused(t *testing.T, subject string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation for %s", subject)
		}
	}
}

// short bounds a call the broker refuses: it never answers, and the
// refusal (checked with refused) arrives at once.
func short() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 500*time.Millisecond)
}

// long bounds a call that must succeed.
func long() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

func TestOutsiderIsRefused(t *testing.T) {
	s := theShop(t)
	if nc, err := nats.Connect(s.NATSURL, tlsOpts...); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("anonymous connect: %v, want an authorization violation", err)
	}
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	if nc, err := nats.Connect(s.NATSURL, append([]nats.Option{nats.Nkey(pub, kp.Sign)}, tlsOpts...)...); err == nil {
		nc.Close()
		t.Fatal("an unknown nkey connected")
	}
}

// An identity that is not a consumer's owner cannot pull from it (join it
// as a rogue instance), nor delete, pause or change it.
func TestRogueConsumerIsRefused(t *testing.T) {
	s := theShop(t)
	admin := as(t, s, shop.Admin)
	for _, tc := range []struct{ who, consumer string }{
		{"payment", "order_v1_reserve_do"}, // another participant
		{"gateway", "order_v1_charge_do"},  // a reader, who may make ordered consumers
		{"inventory", "order_v1_charge_undo"},
	} {
		t.Run(tc.who+"/"+tc.consumer, func(t *testing.T) {
			c := as(t, s, tc.who)
			next := "$JS.API.CONSUMER.MSG.NEXT.CHOREO." + tc.consumer
			ctx, cancel := short()
			defer cancel()
			if _, err := c.nc.RequestWithContext(ctx, next, []byte(`{"batch":1,"expires":1000000000}`)); err == nil {
				t.Fatal("pulled from another's consumer")
			}
			c.refused(t, next)

			ctx, cancel = short()
			defer cancel()
			if err := c.js.DeleteConsumer(ctx, "CHOREO", tc.consumer); err == nil {
				t.Fatal("deleted another's consumer")
			}
			c.refused(t, "$JS.API.CONSUMER.DELETE.CHOREO."+tc.consumer)

			ctx, cancel = short()
			defer cancel()
			if _, err := c.js.PauseConsumer(ctx, "CHOREO", tc.consumer, time.Now().Add(time.Hour)); err == nil {
				t.Fatal("paused another's consumer")
			}
			c.refused(t, "$JS.API.CONSUMER.PAUSE.CHOREO."+tc.consumer)

			ctx, cancel = short()
			defer cancel()
			if _, err := c.js.UpdateConsumer(ctx, "CHOREO", jetstream.ConsumerConfig{Durable: tc.consumer, AckPolicy: jetstream.AckExplicitPolicy,
				FilterSubjects: []string{"choreo.log.nothing.>", "choreo.log.nowhere.>"}}); err == nil {
				t.Fatal("changed another's consumer")
			}
			c.refused(t, "$JS.API.CONSUMER.CREATE.CHOREO."+tc.consumer)

			ctx, cancel = long()
			defer cancel()
			info, err := admin.js.Consumer(ctx, "CHOREO", tc.consumer)
			if err != nil {
				t.Fatalf("the consumer is gone: %v", err)
			}
			if cfg := info.CachedInfo(); cfg.Paused || strings.Contains(strings.Join(cfg.Config.FilterSubjects, ","), "nothing") {
				t.Fatalf("the consumer was changed: %+v", cfg)
			}
		})
	}
}

// A service cannot append an outcome of a step it does not own, even with
// the compare-and-set headers right: the broker refuses the publish.
func TestForgedOutcomeIsRefused(t *testing.T) {
	s := theShop(t)
	base := "http://" + s.HTTPAddr
	cust := shoptest.Register(t, base, "Ada", "FR")
	id := shoptest.PlaceOrder(t, base, cust, "4000000000000002", shoptest.Item("sku-mug", 1)) // declined
	shoptest.AwaitStatus(t, base, cust, id, "rejected")

	st, err := s.Deps.Sagas.Get(context.Background(), schemas.OrderFlow, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ who, step string }{{"payment", "reserve"}, {"inventory", "charge"}, {"gateway", "charge"}, {"customer", "confirm"}} {
		c := as(t, s, tc.who)
		subject := fmt.Sprintf("choreo.log.order.%s.v%d.%s.done", id, st.Version, tc.step)
		m := nats.NewMsg(subject)
		m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, "choreo.log.order."+id+".>")
		m.Data = []byte(`{}`)
		ctx, cancel := short()
		if _, err := c.js.PublishMsg(ctx, m); err == nil {
			t.Errorf("%s appended %s's outcome", tc.who, tc.step)
		}
		cancel()
		c.refused(t, subject)
	}
	// A compensation command is not an outcome: a participant may publish
	// one, and the reader obeys it only when the log makes it due.
	if got := status(t, base, cust, id); got != "rejected" {
		t.Fatalf("order is %s, want rejected", got)
	}
}

// A participant may append its own step's outcomes: payment may append a
// charge "done". It may not make that event say more than a charge done
// says. Here payment's identity appends, on its own subject and with the
// compare-and-set right, a charge done carrying a confirmed saga's state on
// top of an order it declined: before readers checked what an event may
// change, the order service's OnEnd took it and confirmed the order. Now
// every reader refuses it as forged: the order stays rejected, the saga
// compensated, and the event is dead-lettered with the reason.
func TestForgingParticipantIsRefused(t *testing.T) {
	s := theShop(t)
	base := "http://" + s.HTTPAddr
	cust := shoptest.Register(t, base, "Ada", "FR")
	good := shoptest.PlaceOrder(t, base, cust, "4242424242424242", shoptest.Item("sku-mug", 1))
	declined := shoptest.PlaceOrder(t, base, cust, "4000000000000002", shoptest.Item("sku-mug", 1))
	shoptest.AwaitStatus(t, base, cust, good, "confirmed")
	shoptest.AwaitStatus(t, base, cust, declined, "rejected")

	payment := as(t, s, "payment")
	ctx, cancel := long()
	defer cancel()
	stream, err := payment.js.Stream(ctx, access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	confirmed, err := stream.GetLastMsgForSubject(ctx, "choreo.log.order."+good+".>")
	if err != nil {
		t.Fatal(err)
	}
	last, err := stream.GetLastMsgForSubject(ctx, "choreo.log.order."+declined+".>")
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Deps.Sagas.Get(ctx, schemas.OrderFlow, declined)
	if err != nil {
		t.Fatal(err)
	}
	subject := fmt.Sprintf("choreo.log.order.%s.v%d.charge.done", declined, st.Version)
	m := nats.NewMsg(subject)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last.Sequence, 10))
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, "choreo.log.order."+declined+".>")
	m.Header.Set("Choreo-State", confirmed.Header.Get("Choreo-State"))
	m.Data = []byte(`{"payment_id":"pay-forged","amount":1}`)
	if _, err := payment.js.PublishMsg(ctx, m); err != nil {
		t.Fatalf("payment may append on charge's subject, but: %v", err)
	}

	var dead []ops.DeadLetter
	sagatest.Poll(t, 30*time.Second, func() bool {
		dead, err = s.Deps.Ops.DeadLetters(context.Background(), schemas.OrderFlow.Name())
		for _, d := range dead {
			if d.Subject == subject && strings.HasPrefix(d.Reason, "forged: ") && d.Consumer == "order__end_order" {
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("no forged dead letter of the order service's OnEnd for %s: %v %v", subject, dead, err)
	})
	// On a cluster every reader quarantines the event at once, and a read
	// may fail while another deletes it: the saga is read again a while.
	sagatest.Poll(t, 10*time.Second, func() bool {
		st, err = s.Deps.Sagas.Get(context.Background(), schemas.OrderFlow, declined)
		return err == nil
	}, func() string { return fmt.Sprintf("declined saga: %v", err) })
	if st.Status != saga.StatusCompensated || st.Step("charge").Status != saga.StepFailed {
		t.Fatalf("declined saga reads %+v, want compensated with charge failed", st)
	}
	if got := status(t, base, cust, declined); got != "rejected" {
		t.Fatalf("the declined order is %s", got)
	}
}

// Another identity cannot write, nor read, inventory's stock.
func TestOtherBucketIsRefused(t *testing.T) {
	s := theShop(t)
	admin := as(t, s, shop.Admin)
	ctx, cancel := long()
	defer cancel()
	kv, err := admin.js.KeyValue(ctx, "inventory")
	if err != nil {
		t.Fatal(err)
	}
	before, err := kv.Get(ctx, "warehouse")
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"payment", "gateway", "order"} {
		c := as(t, s, who)
		subject := "$KV.inventory.warehouse"
		if err := c.nc.Publish(subject, []byte(`{"stock":{"sku-sold-out":1000}}`)); err != nil {
			t.Fatal(err)
		}
		c.refused(t, subject)
		ctx, cancel := short()
		if _, err := c.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET.KV_inventory.$KV.inventory.warehouse", nil); err == nil {
			t.Errorf("%s read inventory's bucket", who)
		}
		cancel()
		c.refused(t, "$JS.API.DIRECT.GET.KV_inventory.$KV.inventory.warehouse")
	}
	ctx, cancel = long()
	defer cancel()
	after, err := kv.Get(ctx, "warehouse")
	if err != nil || after.Revision() != before.Revision() {
		t.Fatalf("the stock changed: revision %d, was %d (%v)", after.Revision(), before.Revision(), err)
	}
}

// No service identity can create, update, purge or delete a stream.
func TestStreamAdminIsRefused(t *testing.T) {
	s := theShop(t)
	admin := as(t, s, shop.Admin)
	count := func(stream string) uint64 {
		ctx, cancel := long()
		defer cancel()
		st, err := admin.js.Stream(ctx, stream)
		if err != nil {
			t.Fatalf("stream %s: %v", stream, err)
		}
		return st.CachedInfo().State.Msgs
	}
	// Something to lose in each.
	ctx, cancel := long()
	defer cancel()
	if _, err := admin.js.Publish(ctx, "choreo.dlq._", []byte("a dead letter")); err != nil {
		t.Fatal(err)
	}
	for _, stream := range []string{"CHOREO", "CHOREO_DLQ"} {
		before := count(stream)
		for _, who := range []string{"payment", "inventory", "order", "gateway"} {
			c := as(t, s, who)
			ctx, cancel := long()
			st, err := c.js.Stream(ctx, stream) // looking it up is allowed
			cancel()
			if err != nil {
				t.Fatalf("%s: stream %s: %v", who, stream, err)
			}
			ctx, cancel = short()
			if err := st.Purge(ctx); err == nil {
				t.Errorf("%s purged %s", who, stream)
			}
			cancel()
			c.refused(t, "$JS.API.STREAM.PURGE."+stream)
			ctx, cancel = short()
			if err := c.js.DeleteStream(ctx, stream); err == nil {
				t.Errorf("%s deleted %s", who, stream)
			}
			cancel()
			c.refused(t, "$JS.API.STREAM.DELETE."+stream)
			ctx, cancel = short()
			cfg := st.CachedInfo().Config
			cfg.MaxMsgs = 1
			if _, err := c.js.UpdateStream(ctx, cfg); err == nil {
				t.Errorf("%s updated %s", who, stream)
			}
			cancel()
			c.refused(t, "$JS.API.STREAM.UPDATE."+stream)
		}
		if after := count(stream); after < before || before == 0 {
			t.Errorf("stream %s: %d messages, had %d", stream, after, before)
		}
	}
	c := as(t, s, "payment")
	ctx, cancel = short()
	defer cancel()
	if _, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: "ROGUE", Subjects: []string{"rogue.>"}}); err == nil {
		t.Error("payment created a stream")
	}
	c.refused(t, "$JS.API.STREAM.CREATE.ROGUE")
}

// The shop works with every service on its own identity: an order is
// confirmed, a declined one rejected, a sold-out one compensated (the
// charge refunded); the credential files are 0600 and a restart reuses
// them, with the orders kept.
func TestShopOnItsOwnIdentitiesAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := startShop(t, dir)
	base := "http://" + s.HTTPAddr
	cust := shoptest.Register(t, base, "Ada", "FR")
	ok := shoptest.PlaceOrder(t, base, cust, "4242424242424242", shoptest.Item("sku-mug", 1))
	declined := shoptest.PlaceOrder(t, base, cust, "4000000000000002", shoptest.Item("sku-mug", 1))
	soldOut := shoptest.PlaceOrder(t, base, cust, "4242424242424242", shoptest.Item("sku-sold-out", 1))
	shoptest.AwaitStatus(t, base, cust, ok, "confirmed")
	shoptest.AwaitStatus(t, base, cust, declined, "rejected")
	shoptest.AwaitStatus(t, base, cust, soldOut, "rejected")
	ctx := context.Background()
	st, err := s.Deps.Sagas.Get(ctx, saga.Named("order"), soldOut)
	if err != nil || st.Status != saga.StatusCompensated || st.Step("charge").Status != saga.StepCompensated {
		t.Fatalf("sold-out saga: %+v %v, want compensated with the charge refunded", st, err)
	}

	credDir := filepath.Join(dir, "credentials")
	seeds := map[string][]byte{}
	for _, name := range append(shop.Services, shop.Admin) {
		path := filepath.Join(credDir, name+".nk")
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
		}
		seeds[name], _ = os.ReadFile(path)
	}
	if fi, err := os.Stat(credDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v %v, want mode 0700", credDir, fi, err)
	}
	if !strings.Contains(s.AdminCLI(), "--nkey "+filepath.Join(credDir, "admin.nk")) {
		t.Errorf("admin CLI %q does not use the admin's seed", s.AdminCLI())
	}
	s.stop()

	again := startShop(t, dir)
	for name, seed := range seeds {
		now, _ := os.ReadFile(filepath.Join(credDir, name+".nk"))
		if !bytes.Equal(now, seed) {
			t.Errorf("the seed of %s changed on restart", name)
		}
	}
	base = "http://" + again.HTTPAddr
	shoptest.AwaitStatus(t, base, cust, ok, "confirmed")
	shoptest.AwaitStatus(t, base, cust, shoptest.PlaceOrder(t, base, cust, "4242424242424242", shoptest.Item("sku-mug", 1)), "confirmed")
	// The services were refused nothing they need.
	for _, r := range append(s.refused.list(), again.refused.list()...) {
		t.Errorf("the broker refused a service: %s", r)
	}
}

func status(t *testing.T, base string, c shoptest.Customer, id string) string {
	t.Helper()
	_, res := shoptest.MustCall(t, "GET", base+"/api/orders/"+id, nil, c.Auth()...)
	s, _ := res["status"].(string)
	return s
}

// What only an operator may do stays the operator's: no service identity
// may cancel a saga (append its _saga.cancelled event), retire or
// reinstate a flow version (write or delete a status key of the flow
// registry), or register a flow it takes no part in.
func TestOperatorActsAreRefused(t *testing.T) {
	s := theShop(t)
	base, cust, id, st := confirmedOrder(t, s)
	for _, who := range []string{"payment", "order", "gateway", "customer"} {
		c := as(t, s, who)
		for _, subject := range []string{
			fmt.Sprintf("choreo.log.order.%s.v%d._saga.cancelled", id, st.Version),
			"$KV." + access.FlowsBucket + ".status.order.v1",
			"$KV." + access.FlowsBucket + ".def.elsewhere.v1",
		} {
			if err := c.nc.Publish(subject, []byte(`{"status":"retired"}`)); err != nil {
				t.Fatal(err)
			}
			c.refused(t, subject)
		}
	}
	// The registry still says both versions are active, and the saga ended
	// as it did.
	vs, err := s.Deps.Ops.Versions(context.Background(), schemas.OrderFlow.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Status != ops.VersionActive {
			t.Errorf("v%d is %s", v.Version, v.Status)
		}
	}
	if got := status(t, base, cust, id); got != "confirmed" {
		t.Errorf("the order is %s", got)
	}
}

// confirmedOrder registers a customer, places an order and waits until it
// is confirmed: the shop's address, the customer, the order's id and its
// saga's state.
func confirmedOrder(t *testing.T, s *running) (base string, cust shoptest.Customer, id string, st *saga.State) {
	t.Helper()
	base = "http://" + s.HTTPAddr
	cust = shoptest.Register(t, base, "Ada", "FR")
	id = shoptest.PlaceOrder(t, base, cust, "4242424242424242", shoptest.Item("sku-mug", 1))
	shoptest.AwaitStatus(t, base, cust, id, "confirmed")
	st, err := s.Deps.Sagas.Get(context.Background(), schemas.OrderFlow, id)
	if err != nil {
		t.Fatal(err)
	}
	return base, cust, id, st
}
