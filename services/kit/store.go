package kit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/saga/access"
)

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

// BucketAccess is what a service needs to use its own buckets and no
// other's: writing their keys, reading them by direct get, and the short
// ordered consumers that list their keys.
func BucketAccess(buckets ...string) access.Access {
	var a access.Access
	for _, b := range buckets {
		s := "KV_" + b
		a.Add(access.ReadStream(s))
		a.Add(access.Access{Publish: access.Rules{Allow: []string{
			"$KV." + b + ".>",
			"$JS.API.DIRECT.GET." + s, "$JS.API.DIRECT.GET." + s + ".>",
			"$JS.API.STREAM.MSG.GET." + s,
			"$JS.FC." + s + ".>",
		}}})
	}
	return a
}
