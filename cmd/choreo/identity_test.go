package main

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// With a service's identity, which may subscribe only under its own
// inbox, the CLI reads what the identity may once told its name
// (--identity or CHOREO_IDENTITY); without it, it says why it failed.
func TestServiceIdentityGetsItsInbox(t *testing.T) {
	trip := saga.MustDefine[Trip]("trip", 1, saga.NewStep[Trip, Ticket]("book", saga.Owner("airline")))
	reader, err := access.Reader("desk", trip)
	if err != nil {
		t.Fatal(err)
	}
	reader.Add(access.ReadDeadLetters()) // an operator's read-only identity
	perm := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: reader.Publish.Allow, Deny: reader.Publish.Deny},
		Subscribe: &server.SubjectPermission{Allow: reader.Subscribe.Allow, Deny: reader.Subscribe.Deny},
	}
	srv := sagatest.NewServer(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "admin", Password: "a"}, {Username: "desk", Password: "d", Permissions: perm}}
	})
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("admin", "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := saga.New(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()
	code, _, errs := runCLI(t, url, "--timeout", "2s", "--user", "desk", "--password", "d", "dlq", "ls")
	if code == 0 {
		t.Errorf("without its inbox, dlq ls worked: %q", errs)
	}
	code, out, errs := runCLI(t, url, "--user", "desk", "--password", "d", "--identity", "desk", "dlq", "ls")
	if code != 0 || strings.Contains(errs, "Permissions Violation") {
		t.Errorf("--identity desk: %d %q %q", code, out, errs)
	}
	t.Setenv("CHOREO_IDENTITY", "desk")
	if code, out, errs = runCLI(t, url, "--user", "desk", "--password", "d", "sagas", "ls", "--flow", "trip"); code != 0 {
		t.Errorf("CHOREO_IDENTITY=desk sagas ls: %d %q %q", code, out, errs)
	}
}
