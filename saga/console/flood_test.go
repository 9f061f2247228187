package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/console"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// A participant may publish dead letters of its flow, as many and as big
// as the broker takes: the list (polled by every open page) reads the
// newest only, their previews only, and still says how many there are.
func TestDeadLetterFloodIsReadInPart(t *testing.T) {
	s := sagatest.NewServer(t)
	c := s.Client()
	nc, _ := s.Connect()
	const n, size = 2000, 64 << 10 // 125 MiB of dead letters
	payload := []byte(strings.Repeat("x", size))
	for i := range n {
		m := nats.NewMsg("choreo.dlq.shop")
		m.Header.Set("Choreo-Dlq-Reason", fmt.Sprintf("flood %d", i))
		m.Data = payload
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	sagatest.Poll(t, 60*time.Second, func() bool {
		dls, err := s.Ops().DeadLetters(ctx, "")
		return err == nil && len(dls) == n
	}, func() string { return "the flood is not stored" })
	if _, _, err := s.Ops().LatestDeadLetters(ctx, 0, 10); !errors.Is(err, saga.ErrInvalidOption) {
		t.Errorf("LatestDeadLetters of none: %v", err)
	}
	srv := httptest.NewServer(console.Handler(c, s.Ops()))
	defer srv.Close()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, err := http.Get(srv.URL + "/api/deadletters")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var d struct {
		Total       int
		DeadLetters []struct {
			Reason  string
			Size    int
			Preview string
		} `json:"dead_letters"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	if d.Total != n || len(d.DeadLetters) == 0 || len(d.DeadLetters) >= n || d.DeadLetters[0].Reason != fmt.Sprintf("flood %d", n-1) ||
		d.DeadLetters[0].Size != size || len(d.DeadLetters[0].Preview) > 300 {
		t.Errorf("total %d, %d listed, the first %q of %d bytes", d.Total, len(d.DeadLetters), d.DeadLetters[0].Reason, d.DeadLetters[0].Size)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
		t.Errorf("listing the dead letters allocated %d MiB: it read more than the newest", got>>20)
	}
}
