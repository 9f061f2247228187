package events_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/events"
)

// ReadAccess names the reader's view consumers and nothing else on the
// event streams: no wildcard that would let it create a consumer of any
// name, no nameless create, no dead letter.
func TestReadAccessNamesOnlyItsViews(t *testing.T) {
	a := events.ReadAccess("gateway")
	views := 0
	for _, s := range a.Publish.Allow {
		switch {
		case s == "$JS.API.STREAM.INFO."+events.Stream:
		case strings.HasPrefix(s, "$JS.API.CONSUMER."):
			rest := strings.TrimPrefix(s, "$JS.API.CONSUMER.")
			verb, rest, _ := strings.Cut(rest, ".")
			if verb == "MSG" {
				verb, rest, _ = strings.Cut(rest, ".")
			}
			stream, rest, _ := strings.Cut(rest, ".")
			name, filter, _ := strings.Cut(rest, ".")
			if stream != events.Stream || !strings.HasPrefix(name, "view_gateway_") || (filter != "" && filter != ">") ||
				(filter != "" && verb != "CREATE") || strings.Contains(name, "*") {
				t.Errorf("ReadAccess allows %s", s)
			}
			views++
		default:
			t.Errorf("ReadAccess allows %s", s)
		}
		if strings.Contains(s, events.DeadLetterStream) {
			t.Errorf("ReadAccess reads dead letters: %s", s)
		}
	}
	if views != 5*events.ViewConsumers {
		t.Errorf("%d consumer subjects, want 5 for each of %d views", views, events.ViewConsumers)
	}
	if len(a.Subscribe.Allow) != 0 || len(a.Publish.Deny) != 0 {
		t.Errorf("ReadAccess: %+v", a)
	}
	// A reader's name that could make a group's consumer name grants none.
	for _, bad := range []string{"", "a__b", "_a", "a.b", "a*"} {
		if got := events.ReadAccess(bad).Publish.Allow; len(got) != 1 {
			t.Errorf("ReadAccess(%q) = %v", bad, got)
		}
	}
}

// Two views of one reader (two instances, or a rebuild beside the live
// one) each read every event in order on a consumer of their own; one
// whose consumer is deleted under it reads on without a gap or a repeat,
// and a closed view's name is free again.
func TestViewsEachReadEveryEvent(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := f.js.Publish(ctx, "events.thing.happened", []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(0, 10)
	v1, err := events.OpenView(ctx, f.js, "gateway")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := events.OpenView(ctx, f.js, "gateway")
	if err != nil {
		t.Fatal(err)
	}
	if v1.Pending() != 10 || v2.Pending() != 10 {
		t.Fatalf("pending %d and %d, want 10", v1.Pending(), v2.Pending())
	}
	read := func(v *events.View, from, to, left int) {
		t.Helper()
		for i := from; i < to; i++ {
			m, pending, err := v.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if string(m.Data()) != fmt.Sprint(i) {
				t.Fatalf("read %s, want %d", m.Data(), i)
			}
			if i == to-1 && pending != uint64(left) {
				t.Fatalf("%d pending after %d, want %d", pending, i, left)
			}
		}
	}
	read(v1, 0, 10, 0)
	read(v2, 0, 5, 5)
	names := consumers(t, f)
	if len(names) != 2 || names[0] != events.ViewConsumer("gateway", 0) || names[1] != events.ViewConsumer("gateway", 1) {
		t.Fatalf("consumers %v, want the first two views", names)
	}
	// The broker loses v2's consumer: it reads on from where it was.
	if err := f.js.DeleteConsumer(ctx, events.Stream, names[1]); err != nil {
		t.Fatal(err)
	}
	publish(10, 15)
	read(v2, 5, 15, 0)
	read(v1, 10, 15, 0)
	v1.Close()
	v3, err := events.OpenView(ctx, f.js, "gateway")
	if err != nil {
		t.Fatal(err)
	}
	defer v3.Close()
	read(v3, 0, 15, 0)
	v2.Close()
	if names := consumers(t, f); len(names) != 1 || names[0] != events.ViewConsumer("gateway", 0) {
		t.Fatalf("consumers %v, want the reused first view alone", names)
	}
}

func consumers(t *testing.T, f *fixture) []string {
	t.Helper()
	s, err := f.js.Stream(context.Background(), events.Stream)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	l := s.ConsumerNames(context.Background())
	for n := range l.Name() {
		out = append(out, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}
