package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/console"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// The flow list gives every version's totals and marks the version the
// console opens on: the newest with sagas in flight, else the newest
// (issue 20: it opened on v1, where no saga was, every count 0).
func TestFlowListOpensOnTheVersionWithSagas(t *testing.T) {
	s := sagatest.NewServer(t)
	c := s.Client()
	a := saga.NewStep[Order, Order]("a")
	b := saga.NewStep[Order, Order]("b") // never served: sagas wait there
	mid := saga.NewStep[Order, Order]("mid")
	v1 := saga.MustDefine[Order]("trip", 1, a, b)
	v2 := saga.MustDefine[Order]("trip", 2, a, mid, b)
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	pass := func(_ context.Context, o Order) (Order, error) { return o, nil }
	if err := saga.Handle(r, a, pass, nil); err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, mid, pass, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	srv := httptest.NewServer(console.Handler(c, s.Ops()))
	t.Cleanup(srv.Close)

	type listed struct {
		Name     string
		Version  int
		Status   string
		Sagas    map[saga.Status]int
		InFlight int `json:"in_flight"`
		Open     bool
	}
	list := func() string {
		resp, err := http.Get(srv.URL + "/api/flows")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var vs []listed
		if err := json.Unmarshal(body, &vs); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		out := ""
		for _, v := range vs {
			out += fmt.Sprintf("v%d %s running=%d in-flight=%d open=%v; ", v.Version, v.Status, v.Sagas[saga.StatusRunning], v.InFlight, v.Open)
		}
		return out
	}
	if got, want := list(), "v1 active running=0 in-flight=0 open=false; v2 active running=0 in-flight=0 open=true; "; got != want {
		t.Errorf("no saga yet: %s, want %s (the newest)", got, want)
	}
	ctx := context.Background()
	if err := saga.Start(ctx, c, v1, "old", Order{ID: "old"}); err != nil {
		t.Fatal(err)
	}
	want := "v1 active running=1 in-flight=1 open=true; v2 active running=0 in-flight=0 open=false; "
	sagatest.Poll(t, 20*time.Second, func() bool { return list() == want }, func() string { return "a v1 saga in flight: " + list() + ", want " + want })
	for _, id := range []string{"n1", "n2"} {
		if err := saga.Start(ctx, c, v2, id, Order{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	want = "v1 active running=1 in-flight=1 open=false; v2 active running=2 in-flight=2 open=true; "
	sagatest.Poll(t, 20*time.Second, func() bool { return list() == want }, func() string { return "v2 sagas in flight: " + list() + ", want " + want })
}
