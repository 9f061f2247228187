package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/console"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// The console lists the sagas started for later, with when each begins,
// and shows one as scheduled.
func TestConsoleScheduled(t *testing.T) {
	s := sagatest.NewServer(t)
	c := s.Client()
	book := saga.NewStep[Order, Charged]("book", saga.Owner("desk"))
	flow := saga.MustDefine[Order]("later", 1, book)
	r, err := saga.NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, book, func(context.Context, Order) (Charged, error) { return Charged{}, nil }, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := saga.Start(context.Background(), c, flow, "l-1", Order{ID: "l-1"}, saga.At(at)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(console.Handler(c, s.Ops()))
	t.Cleanup(srv.Close)
	get := func(path string, v any) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, v) != nil {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
	}
	var list []struct {
		Flow, ID  string
		Version   int
		Scheduled time.Time
	}
	get("/api/scheduled", &list)
	if len(list) != 1 || list[0].ID != "l-1" || list[0].Flow != "later" || !list[0].Scheduled.Equal(at) {
		t.Fatalf("scheduled %+v", list)
	}
	var d struct {
		State    saga.State
		Timeline []struct{ Step, Phase, Note, Status string }
	}
	get("/api/sagas/later/l-1", &d)
	if d.State.Status != saga.StatusScheduled || !d.State.Scheduled.Equal(at) || len(d.Timeline) != 1 ||
		d.Timeline[0].Status != "scheduled" || !strings.Contains(d.Timeline[0].Note, "scheduled to begin") {
		t.Fatalf("saga %+v", d)
	}
}
