package security_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/ops"
)

// A participant plants a dead letter that says it copies a deadline timer
// of a saga: the dead letter is shown as written by that participant (the
// broker's word, not the dead letter's), it cannot be written under
// another identity's name, and the operator's replay republishes nothing:
// a replay only republishes the timer the broker stored where the dead
// letter says, read back from the timer stream.
func TestPlantedDeadLetterIsNotReplayed(t *testing.T) {
	s := theShop(t)
	base, cust, id, st := confirmedOrder(t, s)
	timer := fmt.Sprintf("choreo.timer.order.%s.v%d", id, st.Version)
	pay := as(t, s, "payment")
	plant := func(subject string, seq string) *nats.Msg {
		m := nats.NewMsg(subject)
		m.Header.Set("Choreo-Dlq-Subject", timer)
		m.Header.Set("Choreo-Dlq-Reason", "deadline timer unreadable: a limit since raised")
		m.Header.Set("Choreo-Dlq-Consumer", "order_v2__timers")
		m.Header.Set("Choreo-Timer", "deadline")
		if seq != "" {
			m.Header.Set("Choreo-Dlq-Sequence", seq)
		}
		return m
	}
	// Not under another's name, nor without one.
	for _, subject := range []string{"choreo.dlq.order", "choreo.dlq.order.inventory", "choreo.dlq.order._", "choreo.dlq._.order"} {
		if err := pay.nc.PublishMsg(plant(subject, "")); err != nil {
			t.Fatal(err)
		}
		pay.refused(t, subject)
	}
	ctx, cancel := long()
	defer cancel()
	// Under its own name it may: the flow's runners dead-letter that way.
	timers, err := s.Deps.JS.Stream(ctx, access.TimerStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := timers.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := info.State.LastSeq
	var planted []uint64
	for _, seq := range []string{"", "1", fmt.Sprint(before + 1000)} {
		ack, err := pay.js.PublishMsg(ctx, plant("choreo.dlq.order.payment", seq))
		if err != nil {
			t.Fatal(err)
		}
		planted = append(planted, ack.Sequence)
	}
	for _, seq := range planted {
		d, err := s.Deps.Ops.DeadLetterAt(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if d.Writer != "payment" {
			t.Errorf("dead letter %d is shown as written by %q, want payment", seq, d.Writer)
		}
		what, err := s.Deps.Ops.ReplayDeadLetter(ctx, seq)
		if !errors.Is(err, ops.ErrNotReplayable) {
			t.Errorf("replay of planted dead letter %d: %q, %v; want ErrNotReplayable", seq, what, err)
			continue
		}
		t.Logf("replay %d: %v", seq, err)
	}
	// Nothing was published on the saga's timer subject.
	if _, err := timers.GetLastMsgForSubject(ctx, timer); err == nil {
		info, _ := timers.Info(ctx)
		if info.State.LastSeq > before {
			m, _ := timers.GetLastMsgForSubject(ctx, timer)
			if m != nil && m.Sequence > before {
				t.Errorf("a timer was published on %s by the replay", timer)
			}
		}
	} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatal(err)
	}
	if got := status(t, base, cust, id); got != "confirmed" {
		t.Errorf("the order is %s", got)
	}
}

// The gateway's reader identity reads sagas, not the dead letters: every
// way of reading them is refused.
func TestReaderReadsNoDeadLetters(t *testing.T) {
	s := theShop(t)
	gw := as(t, s, "gateway")
	for _, subject := range []string{
		"$JS.API.CONSUMER.CREATE." + access.DeadLetterStream + ".peek",
		"$JS.API.CONSUMER.CREATE." + access.DeadLetterStream + ".peek.choreo.dlq.>",
		"$JS.API.CONSUMER.CREATE." + access.DeadLetterStream,
		"$JS.API.DIRECT.GET." + access.DeadLetterStream,
		"$JS.API.STREAM.MSG.GET." + access.DeadLetterStream,
	} {
		if err := gw.nc.PublishRequest(subject, gw.nc.NewRespInbox(), []byte(`{"seq":1}`)); err != nil {
			t.Fatal(err)
		}
		gw.refused(t, subject)
	}
}
