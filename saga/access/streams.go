package access

import (
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/internal/engine"
)

// How choreo's streams are configured is a deployer's choice, made once at
// provisioning: these options go to Provision, and to saga.New where a
// service creates the streams itself (an embedded server, a test). Give a
// service's saga.New or saga.Open the same ones as Provision, or New
// updates the streams to what it was given.

// WithReplicas sets the replica count of choreo's streams (1, 3 or 5). The
// default is 3 when the server is part of a cluster and 1 otherwise. With 3
// each write waits for a quorum of two servers, which costs a network round
// trip per saga step, and survives the loss of any one server; 1 on a
// cluster is refused unless WithUnsafe is given too.
func WithReplicas(n int) saga.Option { return engine.WithReplicas(n) }

// WithMemoryStorage keeps choreo's streams in memory instead of files.
// Everything is lost when the server stops, sagas in flight included: use it
// only for throwaway tests and benchmarks. The default is file storage.
// Durability of file storage also depends on the server's sync setting:
// with the default (sync every 2 minutes) a machine crash, not a process
// crash, can lose the last writes; sync_interval: always (SyncAlways when
// embedded) fsyncs every write and costs throughput.
func WithMemoryStorage() saga.Option { return engine.WithMemoryStorage() }

// WithDuplicateWindow sets how long the broker remembers message ids to drop
// duplicate publishes (default 2 minutes). Longer windows cost server memory
// per message in the window.
func WithDuplicateWindow(d time.Duration) saga.Option { return engine.WithDuplicateWindow(d) }

// WithMaxAge bounds how long anything in the saga stream is kept (default:
// for ever), running sagas included: a saga older than this loses its
// state. Prefer saga.WithRetention, which removes only ended sagas; MaxAge is a
// backstop, to set well above the longest saga.
func WithMaxAge(d time.Duration) saga.Option { return engine.WithMaxAge(d) }

// WithStreamLimits bounds the saga stream: maxMsgs messages (0 or -1: no
// bound) and maxBytes bytes (0: the default, DefaultStreamMaxBytes, 10 GiB;
// -1: no bound). The broker then refuses writes beyond the limits instead
// of dropping old state, and saga.Start refuses new sagas
// (saga.ErrStreamFull) once less than a fifth of either limit is left, so
// that the sagas in flight keep room to finish. Keep the limits well above
// sagas in flight times events per saga. Every stream choreo creates has
// limits by default: see docs/operating.md.
func WithStreamLimits(maxMsgs, maxBytes int64) saga.Option {
	return engine.WithStreamLimits(maxMsgs, maxBytes)
}

// DefaultStreamMaxBytes is the saga stream's size limit when
// WithStreamLimits does not set one.
const DefaultStreamMaxBytes = engine.DefaultStreamMaxBytes

// WithUnsafe accepts configurations that lose sagas when a server fails:
// unreplicated streams on a cluster, taking over streams on memory
// storage. Without it saga.New refuses them with saga.ErrUnsafeConfig. For tests and
// throwaway setups only.
func WithUnsafe() saga.Option { return engine.WithUnsafe() }
