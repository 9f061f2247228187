// Package kit is what the shop's services share: their dependencies, a
// JSON store over a JetStream key-value bucket of their own, schema-checked
// event handlers, and request/reply endpoints for the gateway's commands.
package kit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"golang.org/x/sync/errgroup"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
)

// NewID returns a new identifier with the prefix: prefix-NUID. NUIDs are
// base62 and only unique as they are (never change their case).
func NewID(prefix string) string { return prefix + "-" + nuid.Next() }

// Deps are what every service takes. The caller owns the connection.
type Deps struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	Sagas  *saga.Client
	Bus    *events.Bus
	Logger *slog.Logger
	// Admin is the process's admin listener's mux and metrics (obs.go);
	// nil without one.
	Admin *Admin
}

// DepsOption configures NewDeps.
type DepsOption func(*Deps)

// WithAdmin has the service's sagas counted in a's metrics, and lets the
// service add its admin endpoints to a's mux.
func WithAdmin(a *Admin) DepsOption { return func(d *Deps) { d.Admin = a } }

// NewDeps builds the dependencies over a connection, creating choreo's
// streams if needed. source names the service in CloudEvents.
func NewDeps(ctx context.Context, nc *nats.Conn, source string, logger *slog.Logger, opts ...DepsOption) (Deps, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var o Deps
	for _, opt := range opts {
		opt(&o)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return Deps{}, err
	}
	sopts := []saga.Option{saga.WithSource(source), saga.WithLogger(logger.With("service", source))}
	if o.Admin != nil && o.Admin.Metrics != nil {
		sopts = append(sopts, saga.WithObserver(o.Admin.Metrics))
	}
	c, err := saga.New(ctx, js, sopts...)
	if err != nil {
		return Deps{}, err
	}
	bus, err := events.New(ctx, js, events.WithSource(source), events.WithLogger(logger))
	if err != nil {
		return Deps{}, err
	}
	return Deps{NC: nc, JS: js, Sagas: c, Bus: bus, Logger: logger.With("service", source), Admin: o.Admin}, nil
}

// Runner returns a saga runner that checks every step input against its
// schema.
func (d Deps) Runner() (*saga.Runner, error) {
	versions, err := orderVersions()
	if err != nil {
		return nil, err
	}
	opts := append([]saga.RunnerOption{saga.WithValidator(schemas.Validate), saga.WithSchemas(schemas.Schema)}, versions...)
	r, err := saga.NewRunner(d.Sagas, append(opts, faultOptions()...)...)
	if err == nil && d.Admin != nil && d.Admin.Metrics != nil {
		d.Admin.Metrics.Watch(d.JS, r)
	}
	return r, err
}

// Store keeps a service's own data as JSON values in its KV bucket.
type Store struct {
	kv     jetstream.KeyValue
	nc     *nats.Conn
	api    string
	bucket string
	// replicated: the bucket has replicas, and a get may be answered by
	// one that lags the leader. With one server, every get is the leader's.
	replicated bool
}

// ErrNotFound is returned for a key that has no value.
var ErrNotFound = errors.New("not found")

// OpenStore creates or opens the service's bucket (file storage).
func OpenStore(ctx context.Context, js jetstream.JetStream, bucket string) (*Store, error) {
	return OpenExpiringStore(ctx, js, bucket, 0)
}

// OpenExpiringStore is OpenStore for a bucket whose values are removed
// ttl after they were last written (0: never).
func OpenExpiringStore(ctx context.Context, js jetstream.JetStream, bucket string, ttl time.Duration) (*Store, error) {
	replicas := 1
	if js.Conn().ConnectedClusterName() != "" {
		replicas = 3 // a service's records survive the loss of a server
	}
	kv, err := jsutil.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: bucket, Storage: jetstream.FileStorage, History: 1, Replicas: replicas, TTL: ttl})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, jsutil.Refused(js.Conn(), "KV_"+bucket, err))
	}
	return &Store{kv: kv, nc: js.Conn(), api: jsutil.APIPrefix(js), bucket: bucket, replicated: replicas > 1}, nil
}

// leaderGet reads key from the bucket's stream leader. Gets go to the
// nearest replica, and one that lags (a server back from a restart,
// catching up) answers "not found" for a value the leader has: before
// anyone acts on a value's absence, the leader confirms it.
//
// Like every request of Update, it is bounded by attemptTimeout: one sent
// to a server as it stops is never answered.
func (s *Store) leaderGet(ctx context.Context, key string) ([]byte, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	m, seq, err := jsutil.LeaderMsg(ctx, s.nc, s.api, "KV_"+s.bucket, jsutil.LastBySubject("$KV."+s.bucket+"."+key))
	if errors.Is(err, jsutil.ErrNoMessage) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("bucket %s: read %s from the leader: %w", s.bucket, key, err)
	}
	if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return nil, 0, ErrNotFound
	}
	return m.Data, seq, nil
}

// Get reads key into v.
func (s *Store) Get(ctx context.Context, key string, v any) error {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		if !s.replicated {
			return ErrNotFound
		}
		data, _, err := s.leaderGet(ctx, key)
		if err != nil {
			return err
		}
		return json.Unmarshal(data, v)
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(e.Value(), v)
}

// Put writes v under key.
func (s *Store) Put(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, key, data)
	return err
}

// Update applies fn to the value under key (the zero value when there is
// none) with compare-and-set, retrying on a lost race. fn returning false
// leaves the value as it is.
func Update[T any](ctx context.Context, s *Store, key string, fn func(v *T) (bool, error)) (T, error) {
	var lost retries
	askLeader := false
	for try := 0; ; try++ {
		if try > 0 {
			// A lost race, or a read from a replica that lags the leader
			// (reads go to the nearest one): back off a little before
			// reading again rather than spin on it.
			select {
			case <-ctx.Done():
				var v T
				return v, ctx.Err()
			case <-time.After(time.Duration(min(try, 50)) * 2 * time.Millisecond):
			}
		}
		var v T
		var rev uint64
		var data []byte
		var err error
		if askLeader {
			data, rev, err = s.leaderGet(ctx, key)
		} else {
			var e jetstream.KeyValueEntry
			if e, err = attempt(ctx, func(ctx context.Context) (jetstream.KeyValueEntry, error) { return s.kv.Get(ctx, key) }); err == nil {
				data, rev = e.Value(), e.Revision()
			}
		}
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, ErrNotFound):
		case unanswered(ctx, err) && lost.again(ctx):
			continue
		case err != nil:
			return v, err
		default:
			if err := json.Unmarshal(data, &v); err != nil {
				return v, err
			}
		}
		change, err := fn(&v)
		if s.replicated && rev == 0 && !askLeader && (err != nil || !change) {
			// fn acts on the value's absence, which a replica that lags
			// may only seem to show (a Create, by contrast, is checked by
			// the leader): the leader confirms it first.
			data, lrev, lerr := s.leaderGet(ctx, key)
			switch {
			case errors.Is(lerr, ErrNotFound):
			case unanswered(ctx, lerr) && lost.again(ctx):
				continue
			case lerr != nil:
				return v, lerr
			default:
				v, rev = *new(T), lrev
				if err := json.Unmarshal(data, &v); err != nil {
					return v, err
				}
				change, err = fn(&v)
			}
		}
		if err != nil || !change {
			return v, err
		}
		out, err := json.Marshal(v)
		if err != nil {
			return v, err
		}
		_, err = attempt(ctx, func(ctx context.Context) (uint64, error) {
			if rev == 0 {
				return s.kv.Create(ctx, key, out)
			}
			return s.kv.Update(ctx, key, out, rev)
		})
		// Unanswered, the write may have been made: the next read tells,
		// and fn sees its own change.
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongSeq(err) {
			// A write refused: the value is newer than the one read, a
			// lost race or a replica that lags. On a replicated bucket the
			// leader tells what it is now (asking the replica again may
			// spin until it catches up).
			askLeader = s.replicated
			continue
		}
		if unanswered(ctx, err) && lost.again(ctx) {
			continue
		}
		return v, err
	}
}

func isWrongSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Each calls fn with every key and value of the bucket, in one pass
// (a watch, not a get per key), until fn returns an error.
func (s *Store) Each(ctx context.Context, fn func(key string, value []byte) error) error {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch of the bucket stopped")
			}
			if e == nil {
				return nil // every value has been seen
			}
			if err := fn(e.Key(), e.Value()); err != nil {
				return err
			}
		}
	}
}

// Keys lists the bucket's keys.
func (s *Store) Keys(ctx context.Context) ([]string, error) {
	keys, err := s.kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	return keys, err
}

// On handles the events of a topic for a group: each is checked against
// its schema (an invalid one is dead-lettered) and decoded into T.
func On[T any](r *message.Router, bus *events.Bus, group, topic string, fn func(ctx context.Context, e T) error) error {
	typ := schemas.TypeOfTopic[topic]
	sub, err := bus.Subscriber(group)
	if err != nil {
		return err
	}
	r.AddConsumerHandler(group+"."+topic, topic, sub, func(msg *message.Message) error {
		if err := schemas.Validate(typ, msg.Payload); err != nil {
			return saga.Abort(fmt.Errorf("schema-invalid %s: %v", typ, err))
		}
		var v T
		if err := json.Unmarshal(msg.Payload, &v); err != nil {
			return saga.Abort(fmt.Errorf("undecodable payload: %w", err))
		}
		return fn(msg.Context(), v)
	})
	return nil
}

// BadRequest is a refusal to pass back to the caller of an endpoint.
type BadRequest struct{ Msg string }

func (b BadRequest) Error() string { return b.Msg }

// Unavailable is a refusal because something the service needs is
// missing or unreachable: the caller may try again later.
type Unavailable struct{ Msg string }

func (u Unavailable) Error() string { return u.Msg }

// Conflict is a refusal because the request contradicts what the service
// already has under the same name: an idempotency key reused for another
// order. Trying again cannot help.
type Conflict struct{ Msg string }

func (c Conflict) Error() string { return c.Msg }

// Reply is what an endpoint answers: a result or an error.
type Reply struct {
	Result      json.RawMessage `json:"result,omitempty"`
	Error       string          `json:"error,omitempty"`
	Bad         bool            `json:"bad,omitempty"`         // the request was at fault
	Unavailable bool            `json:"unavailable,omitempty"` // try again later
	Conflict    bool            `json:"conflict,omitempty"`    // contradicts what the service has
}

// ServeConcurrency is how many requests one Serve answers at once.
const ServeConcurrency = 64

// Serve answers requests on subject with fn, in a queue group so that the
// instances of a service share them, until ctx ends. Requests are
// answered concurrently, up to ServeConcurrency at once (one slow request,
// waiting on the broker, does not hold up the next); past that the
// subscription waits.
func Serve[Req, Res any](ctx context.Context, nc *nats.Conn, subject string, fn func(ctx context.Context, req Req) (Res, error)) error {
	slots := make(chan struct{}, ServeConcurrency)
	var inflight sync.WaitGroup
	sub, err := nc.QueueSubscribe(subject, subject, func(m *nats.Msg) {
		slots <- struct{}{}
		inflight.Add(1)
		go func() {
			defer func() { <-slots; inflight.Done() }()
			data, _ := json.Marshal(answer(ctx, m.Data, fn))
			_ = m.Respond(data)
		}()
	})
	if err != nil {
		return err
	}
	closed := make(chan struct{})
	sub.SetClosedHandler(func(string) { close(closed) }) // after the last callback
	<-ctx.Done()
	if err := sub.Drain(); err != nil {
		return err
	}
	<-closed // each request taken has its goroutine: they answer
	inflight.Wait()
	return nil
}

// answer is fn's reply to one request.
func answer[Req, Res any](ctx context.Context, data []byte, fn func(ctx context.Context, req Req) (Res, error)) Reply {
	var req Req
	if err := json.Unmarshal(data, &req); err != nil {
		return Reply{Error: "malformed request: " + err.Error(), Bad: true}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	res, err := fn(rctx, req)
	cancel()
	var bad BadRequest
	var unavailable Unavailable
	var conflict Conflict
	switch {
	case errors.As(err, &bad):
		return Reply{Error: bad.Msg, Bad: true}
	case errors.As(err, &unavailable):
		return Reply{Error: unavailable.Msg, Unavailable: true}
	case errors.As(err, &conflict):
		return Reply{Error: conflict.Msg, Conflict: true}
	case err != nil:
		return Reply{Error: err.Error()}
	}
	var rep Reply
	rep.Result, _ = json.Marshal(res)
	return rep
}

// Call sends a request to an endpoint and decodes its result. A refusal
// comes back as BadRequest.
func Call[Req, Res any](ctx context.Context, nc *nats.Conn, subject string, req Req) (Res, error) {
	var res Res
	data, err := json.Marshal(req)
	if err != nil {
		return res, err
	}
	m, err := nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return res, fmt.Errorf("%s: %w", subject, err)
	}
	var rep Reply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return res, fmt.Errorf("%s: bad reply: %w", subject, err)
	}
	if rep.Bad {
		return res, BadRequest{Msg: rep.Error}
	}
	if rep.Unavailable {
		return res, Unavailable{Msg: rep.Error}
	}
	if rep.Conflict {
		return res, Conflict{Msg: rep.Error}
	}
	if rep.Error != "" {
		return res, errors.New(rep.Error)
	}
	return res, json.Unmarshal(rep.Result, &res)
}

// RunRouter runs a watermill router until ctx ends.
func RunRouter(ctx context.Context, r *message.Router) error {
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-ctx.Done():
		_ = r.Close()
		<-errc
		return nil
	case err := <-errc:
		return err
	}
}

// All reads every value of a bucket, for checkers and operators.
func All[T any](ctx context.Context, js jetstream.JetStream, bucket string) ([]T, error) {
	s, err := OpenStore(ctx, js, bucket)
	if err != nil {
		return nil, err
	}
	keys, err := s.Keys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(keys))
	for _, k := range keys {
		var v T
		if err := s.Get(ctx, k, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Together runs a service's loops (its saga runner, its event router, its
// endpoints) until ctx ends, or until one fails, which stops the others:
// a service never runs half alive.
func Together(ctx context.Context, runs ...func(context.Context) error) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, run := range runs {
		g.Go(func() error { return run(gctx) })
	}
	return g.Wait()
}

// BucketAccess is what a service needs to use its own buckets and no
// other's: writing their keys, reading them by direct get, and the short
// ordered consumers that list their keys.
func BucketAccess(buckets ...string) saga.Access {
	var a saga.Access
	for _, b := range buckets {
		s := "KV_" + b
		a.Add(saga.ReadStream(s))
		a.Add(saga.Access{Publish: saga.Rules{Allow: []string{
			"$KV." + b + ".>",
			"$JS.API.DIRECT.GET." + s, "$JS.API.DIRECT.GET." + s + ".>",
			"$JS.API.STREAM.MSG.GET." + s,
			"$JS.FC." + s + ".>",
		}}})
	}
	return a
}
