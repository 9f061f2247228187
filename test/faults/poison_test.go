package faults_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/customer"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
)

// poison is one bad message and what its readers must say about it.
type poison struct {
	id     string
	kind   string
	msg    *nats.Msg
	raw    string         // a header block sent as is by a raw client, instead of msg's
	reason *regexp.Regexp // what every reader's dead letter says
	readBy []string       // the consumers whose filters take the subject
}

// Scenario 6: poison on every subject the shop's processes read, while
// orders flow. The subjects are not a hand-made list: they are every
// filter of every consumer in the broker, so a new consumer is covered by
// the test without a change to it. Every reader of a poisoned message
// dead-letters it with the reason, no process exits, and the sagas placed
// meanwhile all end with their invariants kept.
func TestPoisonOnEverySubject(t *testing.T) {
	// The shop's processes serve the order flow's newest version only, the
	// one its orders start on: a poisoned message on a version 1 subject
	// would need a version 1 saga's state to be well-formed.
	h := newHarness(t, setup{env: func(*harness, string, int) []string {
		return []string{kit.OrderVersionsEnv + "=" + strconv.Itoa(schemas.OrderFlowV2.Version())}
	}})
	l := h.startLoad(scale(150), 30)
	ctx := context.Background()
	flow := schemas.OrderFlow.Name()

	// A real start event's Choreo-State is the template for well-formed
	// saga log events.
	var tmpl *jetstream.RawStreamMsg
	sagatest.Poll(t, 30*time.Second, func() bool {
		ids := l.ids()
		if len(ids) == 0 {
			return false
		}
		s, err := h.d.JS.Stream(ctx, access.StreamName)
		if err != nil {
			return false
		}
		tmpl, err = s.GetLastMsgForSubject(ctx, wire.LogSubject(flow, ids[0], schemas.OrderFlowV2.Version(), wire.SagaStep, string(saga.PhaseStart)))
		return err == nil
	}, func() string { return "no saga started" })

	readers := listReaders(t, h)
	var cases []poison
	n := 0
	for filter := range readers {
		if strings.HasSuffix(filter, ">") {
			continue // a catch-all: the subjects of the others fall in it
		}
		switch {
		case strings.HasPrefix(filter, "events."):
			cases = append(cases, eventPoison(filter, &n)...)
		default:
			cases = append(cases, sagaPoison(tmpl, filter, &n)...)
		}
	}
	refusedAtTheDoor := 0
	stored := cases[:0:0]
	for _, c := range cases {
		if c.raw != "" {
			sagatest.PublishRaw(t, h.broker.url, c.msg.Subject, c.raw, string(c.msg.Data))
			stored = append(stored, c)
			continue
		}
		if _, err := h.d.JS.PublishMsg(ctx, c.msg); err != nil {
			var api *jetstream.APIError
			if c.kind == "oversize" && errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
				refusedAtTheDoor++ // the stream's own limit refused it: nothing to dead-letter
				continue
			}
			t.Fatalf("%s on %s: publish: %v", c.kind, c.msg.Subject, err)
		}
		stored = append(stored, c)
	}
	t.Logf("%d poison messages, %d oversize ones refused by their stream's limit", len(cases), refusedAtTheDoor)
	h.faults.Add(int64(len(cases)))
	cases = stored // what was refused at the door has nothing to dead-letter
	h.settle(l, 2*time.Minute)

	// The readers again: a consumer whose service was still starting
	// when the subjects were drawn up reads them by now.
	readers = listReaders(t, h)
	for i := range cases {
		subj := cases[i].msg.Subject
		for f, cs := range readers {
			if subjectMatches(f, subj) {
				cases[i].readBy = append(cases[i].readBy, cs...)
			}
		}
		slices.Sort(cases[i].readBy)
		cases[i].readBy = slices.Compact(cases[i].readBy)
	}

	// The request endpoints the processes serve refuse garbage with a
	// reason, and go on serving.
	for _, subj := range []string{order.PlaceSubject, customer.RegisterSubject, payment.TokenizeSubject} {
		m, err := h.nc.Request(subj, []byte("{not json"), 5*time.Second)
		var rep kit.Reply
		if err != nil || json.Unmarshal(m.Data, &rep) != nil || !rep.Bad || !strings.Contains(rep.Error, "malformed request") {
			t.Errorf("%s answered garbage with %v %v", subj, m, err)
		}
	}

	// Every reader of every poisoned message dead-lettered it.
	type key struct{ id, consumer string }
	var got map[key]string
	collect := func() {
		got = map[key]string{}
		dls, err := h.d.Ops.DeadLetters(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dls {
			got[key{poisonID(d.Subject), d.Consumer}] = d.Reason
		}
		edls, err := h.d.Bus.DeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range edls {
			// The router names a handler <group>.<topic>.
			group, topic, _ := strings.Cut(d.Message.Metadata.Get("handler_poisoned"), ".")
			got[key{d.Message.UUID, events.ConsumerName(group, topic)}] = d.Reason
		}
	}
	// Each poisoned message is dead-lettered with its reason by a reader
	// of its subject (or by the read of its saga's state, "load", which
	// deletes a rogue event from the log, so that later readers may not
	// see it at all).
	missing := func() []string {
		var out []string
		for _, c := range cases {
			matched := false
			for k, r := range got {
				if k.id != c.id {
					continue
				}
				if k.consumer != "load" && !slices.Contains(c.readBy, k.consumer) {
					out = append(out, fmt.Sprintf("%s on %s: dead-lettered by %s, which does not read it", c.kind, c.msg.Subject, k.consumer))
				}
				matched = matched || c.reason.MatchString(r)
			}
			if !matched {
				out = append(out, fmt.Sprintf("%s on %s (read by %v): no dead letter says /%s/", c.kind, c.msg.Subject, c.readBy, c.reason))
			}
		}
		return out
	}
	sagatest.Poll(t, time.Minute, func() bool { collect(); return len(missing()) == 0 },
		func() string { return strings.Join(missing(), "\n") })
	// The forged broker headers named the template's start event: the
	// quarantine of the forgeries deleted them, not it.
	s, err := h.d.JS.Stream(ctx, access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetLastMsgForSubject(ctx, tmpl.Subject); err != nil || m.Sequence != tmpl.Sequence {
		t.Errorf("the start event the forgeries named (%s, sequence %d) is gone: %v", tmpl.Subject, tmpl.Sequence, err)
	}
	h.alive()
	t.Logf("%d poisoned messages on %d subjects, %d dead letters with their reasons, every process alive", len(cases), len(readers), len(got))
}

// poisonID returns the poison id in a saga subject.
func poisonID(subject string) string {
	for _, tok := range strings.Split(subject, ".") {
		if strings.HasPrefix(tok, "poison-") {
			return tok
		}
	}
	return ""
}

// subjectMatches reports whether subject falls under the filter.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

// sagaPoison makes the bad messages for one of choreo's own subjects.
// Those with a well-formed envelope carry what choreo would write on the
// subject (for a saga log event, a real start event's Choreo-State, a
// Nats-Msg-Id and compare-and-set over the saga's subjects; for a command,
// Choreo-After; for a timer, Choreo-Timer) and change what the case is
// about. Flow, saga, step and phase are the subject's: the saga id is a
// fresh poison-N in place of the filter's wildcard.
func sagaPoison(tmpl *jetstream.RawStreamMsg, filter string, n *int) []poison {
	// The one choreo header of the subject's kind of message: its
	// well-formed value, a malformed one and the reason that one gets.
	var key, value, malformed, malformedReason string
	log := strings.HasPrefix(filter, wire.Log)
	switch {
	case log:
		key, value = wire.State, tmpl.Header.Get(wire.State)
		// Field 1 of a c3 state is the flow version: the subject's (a state
		// of another version is refused before anything else is looked at).
		st := strings.Split(value, "|")
		if toks := strings.Split(filter, "."); len(st) > 1 && len(toks) > 4 {
			if v, ok := wire.ParseVersion(toks[4]); ok {
				st[1] = strconv.Itoa(v)
				value = strings.Join(st, "|")
			}
		}
		// Field 5 of a c3 state is the saga's start time, in base 36 (so
		// "yesterday" alone would read as a number).
		if len(st) > 5 {
			st[5] = "yesterday!"
		}
		malformed, malformedReason = strings.Join(st, "|"), "malformed choreo-state"
	case strings.HasPrefix(filter, wire.Cmd):
		key, value, malformed, malformedReason = wire.After, "1", "yesterday", "malformed "+wire.After
	default: // wire.Timer
		key, value, malformed, malformedReason = wire.TimerKind, wire.TimerDeadline, "yesterday", "unknown timer"
	}
	// mk makes a case on the filter's subject for saga poison-N<suffix>;
	// phase, when set, replaces the subject's last token.
	mk := func(kind, reason string, headers bool, suffix, phase, data string, mutate func(h nats.Header)) poison {
		*n++
		id := fmt.Sprintf("poison-%d%s", *n, suffix)
		subj := strings.Replace(filter, "*", id, 1)
		if phase != "" {
			subj = subj[:strings.LastIndexByte(subj, '.')+1] + phase
		}
		m := nats.NewMsg(subj)
		m.Data = []byte(data)
		if headers {
			m.Header.Set(nats.MsgIdHdr, id)
			m.Header.Set(key, value)
			if log {
				toks := strings.Split(subj, ".")
				m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
				m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, wire.LogWildcard(toks[2], toks[3]))
			}
		}
		if mutate != nil {
			mutate(m.Header)
		}
		return poison{id: id, kind: kind, msg: m, reason: regexp.MustCompile(reason)}
	}
	big := `"` + strings.Repeat("x", 600<<10) + `"`
	// Another topic's event: a payload of a type no step takes.
	other := `{"customer_id":"cus-x","name":"x","email":"x@example.com","address":{"line1":"1","city":"c","postcode":"1","country":"FR"},"registered_at":"2026-01-01T00:00:00Z"}`
	cases := []poison{
		mk("garbage without headers", "missing headers", false, "", "", "\x00\x01garbage", nil),
		// The envelope no longer vouches for the payload: on a start, the
		// first step's input check dead-letters it (the shop's validator:
		// "schema-invalid ...: not JSON") and the step fails; on any other
		// subject the saga is unknown.
		mk("malformed JSON", "undecodable payload|not JSON|unknown saga|not appended by choreo", true, "", "", "{not json", nil),
		// Was "unknown type" (a ce-type the subject does not carry): the
		// event type now follows from the subject, so the bad input is a
		// payload of another type on it.
		mk("another type's payload", "schema-invalid|undecodable payload|unknown saga|not appended by choreo", true, "", "", other, nil),
		// Was "repeated header" (Choreo-Saga twice).
		mk("repeated "+key, "repeated header "+key, true, "", "", "{}", func(h nats.Header) { h.Add(key, value) }),
		// Was "missing saga id" (no Choreo-Saga header): the saga id is the
		// subject's now, so the bad inputs are the envelope's one header
		// missing, and a subject whose saga token is no saga id.
		mk("missing "+key, "missing header "+key, true, "", "", "{}", func(h nats.Header) { h.Del(key) }),
		mk("malformed saga id in the subject", "malformed subject tokens", true, "~x", "", "{}", nil),
		// Was "malformed time" (ce-time "yesterday").
		mk("malformed "+key, malformedReason, true, "", "", "{}", func(h nats.Header) { h.Set(key, malformed) }),
		mk("oversize", "oversize", true, "", "", big, nil),
		rawPoison(mk("header block that is not one", ".", false, "", "", "{}", nil), "NATS/1.0\r\nthis is not a header\r\n\r\n"),
	}
	if log {
		cases = append(cases,
			// Was "unknown type", too: a step and phase choreo never writes
			// (read by the consumers of every event of the flow).
			mk("unknown phase in the subject", "unknown event", true, "", "bogus", "{}", nil),
			mk("no compare-and-set", "not appended by choreo", true, "", "", "{}", func(h nats.Header) {
				h.Del(jetstream.ExpectedLastSubjSeqHeader)
				h.Del(jetstream.ExpectedLastSubjSeqSubjHeader)
			}),
			// The broker's own headers, forged to name a real saga's start:
			// the quarantine must not delete that one.
			mk("forged broker headers", "broker's own headers|unknown saga", true, "", "", "{}", func(h nats.Header) {
				h.Set(jetstream.SubjectHeader, tmpl.Subject)
				h.Set(jetstream.SequenceHeader, strconv.FormatUint(tmpl.Sequence, 10))
			}),
		)
	}
	return cases
}

func rawPoison(p poison, hdr string) poison {
	p.raw = hdr
	return p
}

// eventPoison makes the bad messages for a domain-event subject.
func eventPoison(filter string, n *int) []poison {
	mk := func(kind, reason, data string, mutate func(h nats.Header)) poison {
		*n++
		id := fmt.Sprintf("poison-%d", *n)
		m := nats.NewMsg(filter)
		m.Header.Set("Nats-Msg-Id", id)
		m.Header.Set("_watermill_message_uuid", id)
		m.Data = []byte(data)
		if mutate != nil {
			mutate(m.Header)
		}
		return poison{id: id, kind: kind, msg: m, reason: regexp.MustCompile(reason)}
	}
	// Another topic's event: a type this subject does not carry.
	other := `{"order_id":"ord-x","customer_id":"cus-x","items":[{"sku":"sku-mug","qty":1}],"total":100,"currency":"EUR","placed_at":"2026-01-01T00:00:00Z"}`
	if strings.HasSuffix(filter, schemas.TopicOrderPlaced) {
		other = `{"customer_id":"cus-x","name":"x","email":"x@example.com","address":{"line1":"1","city":"c","postcode":"1","country":"FR"},"registered_at":"2026-01-01T00:00:00Z"}`
	}
	return []poison{
		mk("malformed JSON", "schema-invalid .*not JSON", "{not json", nil),
		mk("schema-invalid", "schema-invalid", `{"unexpected": true}`, nil),
		mk("another type's event", "schema-invalid", other, nil),
		mk("missing entity id", "schema-invalid", `{"name":"x"}`, nil),
		mk("repeated header", "repeated header", "{}", func(h nats.Header) { h.Add("ce-type", "a"); h.Add("ce-type", "b") }),
		mk("oversize", "oversize", `{"name":"`+strings.Repeat("x", 600<<10)+`"}`, nil),
	}
}

// listReaders returns every consumer filter in the broker with the
// consumers that have it.
func listReaders(t *testing.T, h *harness) map[string][]string {
	t.Helper()
	ctx := context.Background()
	readers := map[string][]string{}
	for _, stream := range []string{access.StreamName, access.TimerStream, events.Stream} {
		s, err := h.d.JS.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		lister := s.ListConsumers(ctx)
		for ci := range lister.Info() {
			fs := ci.Config.FilterSubjects
			if ci.Config.FilterSubject != "" {
				fs = append(fs, ci.Config.FilterSubject)
			}
			for _, f := range fs {
				readers[f] = append(readers[f], ci.Name)
			}
		}
		if err := lister.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return readers
}
