package security_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/choreo-go/choreo/internal/embedded"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
)

type ticket struct{ N int }

// A library user's flow runs on the permissions access.Permissions derives,
// through every path a runner takes on the broker: a start, a step, the
// saga deadline (a broker-side timer handled by a participant), a
// compensation, and the expiry of the ended saga, which deletes its log
// and commands by sequence (no purge). Nothing is refused.
func TestFlowRunsOnDerivedPermissions(t *testing.T) {
	hold := saga.NewStep[ticket, ticket]("hold", saga.Owner("svc"), saga.Undo("release"))
	// wait never succeeds: the saga's deadline fires while it retries.
	wait := saga.NewStep[ticket, ticket]("wait", saga.Owner("svc"),
		saga.WithRetry(saga.RetryPolicy{MaxAttempts: 1000, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}))
	f := saga.MustDefine[ticket]("sec", 1, hold, wait, saga.Deadline(2*time.Second), saga.StartedBy("starter"))
	perms, err := access.Permissions(f)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]nkeys.KeyPair{}
	var users []*server.NkeyUser
	for _, name := range []string{"admin", "svc", "starter"} {
		kp, _ := nkeys.CreateUser()
		keys[name] = kp
		pub, _ := kp.PublicKey()
		u := &server.NkeyUser{Nkey: pub}
		if a, ok := perms[name]; ok {
			u.Permissions = &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: a.Publish.Allow, Deny: a.Publish.Deny},
				Subscribe: &server.SubjectPermission{Allow: a.Subscribe.Allow, Deny: a.Subscribe.Deny},
			}
		}
		users = append(users, u)
	}
	srv, err := embedded.Start(embedded.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	refused := make(chan error, 16)
	client := func(name string) *saga.Client {
		kp := keys[name]
		pub, _ := kp.PublicKey()
		nc, err := nats.Connect(srv.ClientURL(), nats.Nkey(pub, kp.Sign), nats.CustomInboxPrefix(access.InboxPrefix(name)),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { refused <- err }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		c, err := saga.New(context.Background(), js, saga.WithRetention(time.Second))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return c
	}
	admin := client("admin") // provisions
	svc := client("svc")
	r, _ := saga.NewRunner(svc, saga.WithDrainTimeout(100*time.Millisecond))
	released := make(chan int, 1)
	_ = saga.Handle(r, hold, func(_ context.Context, t ticket) (ticket, error) { return t, nil },
		func(_ context.Context, t, _ ticket) error { released <- t.N; return nil })
	_ = saga.Handle(r, wait, func(context.Context, ticket) (ticket, error) { return ticket{}, errors.New("not yet") }, nil)
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), client("starter"), f, "s1", ticket{N: 7}); err != nil {
		t.Fatal(err)
	}
	st := sagatest.AwaitStatus(t, admin, f, "s1", 30*time.Second, saga.StatusCompensated)
	if st.Step("hold").Status != saga.StepCompensated {
		t.Fatalf("hold is %s, want compensated", st.Step("hold").Status)
	}
	if n := <-released; n != 7 {
		t.Fatalf("released %d", n)
	}
	sagatest.Poll(t, 30*time.Second, func() bool {
		_, err := admin.Get(context.Background(), f, "s1")
		return errors.Is(err, saga.ErrNotFound)
	}, func() string { return "the ended saga did not expire" })
	select {
	case err := <-refused:
		t.Fatalf("refused: %v", err)
	default:
	}
}
