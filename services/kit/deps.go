package kit

import (
	"context"
	"io"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/saga/ops"
	"github.com/choreo-go/choreo/schemas"
)

// Deps are what every service takes. The caller owns the connection.
type Deps struct {
	NC    *nats.Conn
	JS    jetstream.JetStream
	Sagas *saga.Client
	// Ops is the operator's view of the same sagas (dead letters,
	// versions, diagnosis); what it may change is what the identity may.
	Ops    *ops.Client
	Bus    *events.Bus
	Logger *slog.Logger
	// Admin is the process's admin listener's mux and metrics (obs.go);
	// nil without one.
	Admin *Admin

	ring *saga.KeyRing // WithKeyRing
}

// DepsOption configures NewDeps.
type DepsOption func(*Deps)

// WithAdmin has the service's sagas counted in a's metrics, and lets the
// service add its admin endpoints to a's mux.
func WithAdmin(a *Admin) DepsOption { return func(d *Deps) { d.Admin = a } }

// WithKeyRing has the service's saga clients seal the payloads they store
// with r and open them (saga.WithKeyRing); nil leaves them in clear.
func WithKeyRing(r *saga.KeyRing) DepsOption { return func(d *Deps) { d.ring = r } }

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
	if o.ring != nil {
		sopts = append(sopts, saga.WithKeyRing(o.ring))
	}
	c, err := saga.New(ctx, js, sopts...)
	if err != nil {
		return Deps{}, err
	}
	op, err := ops.Open(ctx, js, sopts...)
	if err != nil {
		return Deps{}, err
	}
	bus, err := events.New(ctx, js, events.WithSource(source), events.WithLogger(logger))
	if err != nil {
		return Deps{}, err
	}
	return Deps{NC: nc, JS: js, Sagas: c, Ops: op, Bus: bus, Logger: logger.With("service", source), Admin: o.Admin}, nil
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
		d.Admin.Metrics.WatchSteps(d.JS, d.Ops)
	}
	return r, err
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
