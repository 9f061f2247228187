package security_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// One identity (payment) floods the subjects it may publish to, its own
// step's outcomes, with oversize messages, bounded in count and time,
// while customers order. Every order ends right; what is too large for the
// saga stream is refused there, what it takes is dead-lettered as headers,
// size, hash and a bounded prefix: the dead-letter stream grows by a small
// part of what was sent, never by more.
func TestFloodIsBounded(t *testing.T) {
	s := startShop(t, t.TempDir())
	base := "http://" + s.HTTPAddr
	cust := shoptest.Register(t, base, "Ada", "FR")
	first := shoptest.PlaceOrder(t, base, cust, "4242424242424242", shoptest.Item("sku-mug", 1))
	shoptest.AwaitStatus(t, base, cust, first, "confirmed")
	ctx, cancel := long()
	defer cancel()
	st, err := s.Deps.Sagas.Get(ctx, schemas.OrderFlow, first)
	if err != nil {
		t.Fatal(err)
	}
	dlq := streamState(t, s.Deps.JS, access.DeadLetterStream)
	saga := streamState(t, s.Deps.JS, access.StreamName)

	pay := as(t, s, "payment")
	const huge, big, each = 4 << 20, 900 << 10, 12
	var sent, stored, refused int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the flood: 2*each messages, at most 20s
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for i := range 2 * each {
			size := big
			if i%2 == 0 {
				size = huge
			}
			m := nats.NewMsg(fmt.Sprintf("choreo.log.order.flood%d.v%d.charge.done", i, st.Version))
			m.Data = []byte(strings.Repeat("x", size))
			sent += size
			if _, err := pay.js.PublishMsg(ctx, m); err != nil {
				refused++
			} else {
				stored++
			}
		}
	}()
	var ids []string
	for range 4 {
		ids = append(ids, shoptest.PlaceOrder(t, base, cust, "4242424242424242", shoptest.Item("sku-mug", 1)))
	}
	wg.Wait()
	for _, id := range ids {
		shoptest.AwaitStatus(t, base, cust, id, "confirmed")
	}
	t.Logf("flood: %d bytes sent, %d messages stored, %d refused", sent, stored, refused)
	if refused < each {
		t.Errorf("%d of the %d messages of %d bytes were refused by the saga stream", refused, each, huge)
	}
	// The stored ones are dead-lettered by the runners that read them:
	// each dead letter is a bounded part of what it copies.
	var grown jetstream.StreamState
	deadline := time.Now().Add(15 * time.Second)
	for {
		grown = streamState(t, s.Deps.JS, access.DeadLetterStream)
		if grown.Msgs > dlq.Msgs || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // let the other readers' copies land
	grown = streamState(t, s.Deps.JS, access.DeadLetterStream)
	dm, db := grown.Msgs-dlq.Msgs, grown.Bytes-dlq.Bytes
	t.Logf("dead-letter stream: +%d messages, +%d bytes", dm, db)
	if stored > 0 && dm == 0 {
		t.Error("no dead letter for the flood")
	}
	if dm > 0 && db > dm*24<<10 {
		t.Errorf("dead letters of %d bytes each on average: not bounded", db/dm)
	}
	if db > uint64(sent)/20 {
		t.Errorf("the dead-letter stream grew by %d bytes for %d sent", db, sent)
	}
	if g := streamState(t, s.Deps.JS, access.StreamName); g.Bytes-saga.Bytes > uint64(stored*(big+64<<10)+1<<20) {
		t.Errorf("the saga stream grew by %d bytes for %d stored messages", g.Bytes-saga.Bytes, stored)
	}
}

func streamState(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamState {
	t.Helper()
	ctx, cancel := long()
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}
