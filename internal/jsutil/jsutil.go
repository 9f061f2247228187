// Package jsutil holds JetStream helpers shared by choreo's packages.
package jsutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EnsureStream creates the stream if it is missing and updates it only if
// its configuration differs in a field cfg sets. Many processes start at
// once and each ensures the same streams: sending an update that changes
// nothing costs a stream-wide operation on the server, and nats-server
// 2.15.2 has a data race between a stream update and a concurrent consumer
// creation on that stream (found by this project's -race tests).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return EnsureStream(ctx, js, cfg)
		}
		return s, err
	}
	if err != nil {
		return nil, err
	}
	have := s.CachedInfo().Config
	if Same(have, cfg) {
		return s, nil
	}
	// Limits cfg leaves unset are the operator's: keep them.
	if cfg.MaxMsgs == 0 {
		cfg.MaxMsgs = have.MaxMsgs
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = have.MaxBytes
	}
	return js.UpdateStream(ctx, cfg)
}

// Same reports whether have already holds every field that want sets.
func Same(have, want jetstream.StreamConfig) bool {
	replicas := max(want.Replicas, 1)
	return slices.Equal(have.Subjects, want.Subjects) && have.Storage == want.Storage && have.Replicas == replicas &&
		(want.Duplicates == 0 || have.Duplicates == want.Duplicates) && have.MaxAge == want.MaxAge &&
		have.AllowDirect == want.AllowDirect && have.AllowMsgSchedules == want.AllowMsgSchedules &&
		have.Discard == want.Discard && have.Description == want.Description && limit(have.MaxMsgsPerSubject) == limit(want.MaxMsgsPerSubject) &&
		(want.MaxMsgs == 0 || limit(have.MaxMsgs) == limit(want.MaxMsgs)) && (want.MaxBytes == 0 || limit(have.MaxBytes) == limit(want.MaxBytes)) &&
		(want.MaxMsgSize == 0 || limit(int64(have.MaxMsgSize)) == limit(int64(want.MaxMsgSize)))
}

// limit folds the ways of saying "no limit" (0 in a config, -1 from the
// server) into one.
func limit(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// EnsureKeyValue opens a bucket, creating it when it is missing.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return js.KeyValue(ctx, cfg.Bucket)
		}
	}
	return kv, err
}

// UnsafeConsumer says why an existing consumer cannot be taken over as a
// durable pull consumer with explicit acks, in ways an update cannot
// change; "" when it can (or does not exist).
func UnsafeConsumer(ctx context.Context, js jetstream.JetStream, stream, name string) (string, error) {
	c, err := js.Consumer(ctx, stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return "", nil
	}
	if errors.Is(err, jetstream.ErrNotPullConsumer) {
		return fmt.Sprintf("consumer %s on %s is a push consumer: choreo pulls, so that work is only handed out as fast as it is done", name, stream), nil
	}
	if err != nil {
		return "", err
	}
	cfg := c.CachedInfo().Config
	switch {
	case cfg.Durable == "":
		return fmt.Sprintf("consumer %s on %s is not durable: the broker deletes it %v after its last client goes, and with it the position of the service while it is down", name, stream, cfg.InactiveThreshold), nil
	case cfg.DeliverSubject != "":
		return fmt.Sprintf("consumer %s on %s is a push consumer (deliver subject %s): choreo pulls, so that work is only handed out as fast as it is done", name, stream, cfg.DeliverSubject), nil
	case cfg.AckPolicy != jetstream.AckExplicitPolicy:
		return fmt.Sprintf("consumer %s on %s acknowledges with policy %v: a crash after delivery loses the message; choreo needs explicit acks", name, stream, cfg.AckPolicy), nil
	}
	return "", nil
}

// ScanInactivity is how long the broker keeps a scan's ordered consumer
// whose reader vanished without deleting it.
const ScanInactivity = 30 * time.Second

// DropOrdered deletes an ordered consumer's current consumer on the broker.
// A stopped ordered consumer is otherwise kept until its inactivity
// threshold passes (5 minutes by default), and a stream takes at most 1,000
// consumers by default: reads in a loop (a timeline per request) would run
// into that limit and stop even the services' durable consumers from being
// created.
func DropOrdered(js jetstream.JetStream, stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = js.DeleteConsumer(ctx, stream, info.Name)
}

// Size is a message's size as choreo limits it: its payload and headers.
func Size(h nats.Header, data []byte) int {
	size := len(data)
	for k, vs := range h {
		size += len(k)
		for _, v := range vs {
			size += len(v) + 4
		}
	}
	return size
}

// Refused explains err, the failure to create or update a stream or bucket
// named name, when the broker refused the connection's identity the
// request (it then never answers, and err is a timeout): an admin must
// provision it.
func Refused(nc *nats.Conn, name string, err error) error {
	if last := nc.LastError(); err != nil && errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), "."+name) {
		return fmt.Errorf("%s is missing or differs, and this identity may not create or update it: run provisioning with the admin identity (%w)", name, err)
	}
	return err
}

// APIPrefix is the subject prefix of the JetStream API js talks to, with
// its trailing dot.
func APIPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return jetstream.DefaultAPIPrefix
}

// LastBySubject is a message get request for the newest message on
// subject (wildcards allowed).
func LastBySubject(subject string) []byte {
	return []byte(`{"last_by_subj":` + strconv.Quote(subject) + `}`)
}

// ErrNoMessage is the leader's answer to a get of a message it does not
// have.
var ErrNoMessage = errors.New("no such message")

// LeaderMsg answers a message get request req ({"seq":N} or
// {"last_by_subj":S}) on stream from the stream's leader, never from a
// replica. A direct get (what nats.go's KV and streams use when the stream
// allows it) is answered by the nearest replica, which may lag the leader
// (a server that restarted and is catching up): its "not found" proves
// nothing. The message returned carries the subject and sequence headers a
// direct get adds, after its own.
func LeaderMsg(ctx context.Context, nc *nats.Conn, api, stream string, req []byte) (*nats.Msg, uint64, error) {
	resp, err := nc.RequestWithContext(ctx, api+"STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, 0, err
	}
	var r struct {
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Subject string `json:"subject"`
			Seq     uint64 `json:"seq"`
			Header  []byte `json:"hdrs"`
			Data    []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, 0, err
	}
	switch {
	case r.Error != nil && r.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return nil, 0, ErrNoMessage
	case r.Error != nil:
		return nil, 0, fmt.Errorf("%s (%d)", r.Error.Description, r.Error.ErrCode)
	case r.Message == nil:
		return nil, 0, errors.New("empty answer")
	}
	m := &nats.Msg{Subject: r.Message.Subject, Data: r.Message.Data, Header: nats.Header{}}
	if len(r.Message.Header) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
			m.Header = nats.Header{} // undecodable: the caller's checks refuse it
		}
	}
	m.Header.Add(jetstream.SubjectHeader, r.Message.Subject)
	m.Header.Add(jetstream.SequenceHeader, strconv.FormatUint(r.Message.Seq, 10))
	return m, r.Message.Seq, nil
}
