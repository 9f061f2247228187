// Package carrier is the shop's simulated parcel carrier: it takes the
// shipping service's pickup requests (PickupRequested) and, a delay later,
// announces each parcel delivered (ParcelDelivered), on which the order
// saga's deliver step completes. It keeps nothing: a request it took and
// had not answered when it stopped is answered when shipping asks again
// (the deliver step's wait timed out), as a real carrier's lost webhook
// is made good by asking.
package carrier

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
)

// Name is the carrier's name in its events.
const Name = "choreo-express"

// DelayEnv is how long the carrier takes to deliver a parcel (a Go
// duration; default DefaultDelay): seconds in the demo, days for real.
const DelayEnv = "CHOREO_CARRIER_DELAY"

// DefaultDelay is the carrier's delay when DelayEnv is unset.
const DefaultDelay = 3 * time.Second

// Delay reads DelayEnv.
func Delay() (time.Duration, error) {
	raw := strings.TrimSpace(os.Getenv(DelayEnv))
	if raw == "" {
		return DefaultDelay, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration (3s, 1m)", DelayEnv, raw)
	}
	return d, nil
}

// Service is the carrier.
type Service struct {
	d     kit.Deps
	delay time.Duration

	mu      sync.Mutex
	pending map[string]bool // order ids with a delivery on its way
}

// New returns the carrier; Run starts it.
func New(d kit.Deps) *Service { return &Service{d: d, pending: map[string]bool{}} }

// Run takes pickup requests and delivers their parcels until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var err error
	if s.delay, err = Delay(); err != nil {
		return err
	}
	router, err := s.d.Bus.NewRouter()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if err := kit.On(router, s.d.Bus, "carrier", schemas.TopicPickupRequested, func(_ context.Context, p schemas.PickupRequested) error {
		s.mu.Lock()
		busy := s.pending[p.OrderID]
		s.pending[p.OrderID] = true
		s.mu.Unlock()
		if busy {
			return nil // on its way already
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.deliver(ctx, p)
		}()
		return nil
	}); err != nil {
		return err
	}
	return kit.RunRouter(ctx, router)
}

// deliver announces p's parcel delivered after the carrier's delay. If
// the announcement fails, or the process stops first, shipping asks again.
func (s *Service) deliver(ctx context.Context, p schemas.PickupRequested) {
	defer func() {
		s.mu.Lock()
		delete(s.pending, p.OrderID)
		s.mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return
	case <-time.After(s.delay):
	}
	e := schemas.ParcelDelivered{DeliveryID: p.DeliveryID, OrderID: p.OrderID, Carrier: Name, DeliveredAt: time.Now().UTC()}
	// A broker that cannot take the event now (a node lost, a partition)
	// is asked again: the event's id makes a repeat harmless. Only this
	// process ending loses it, and then shipping asks again after its
	// wait.
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, 5*time.Second) {
		err := events.Publish(ctx, s.d.Bus, schemas.TopicParcelDelivered, "delivered-"+p.OrderID, e)
		if err == nil {
			return
		}
		s.d.Logger.Warn("carrier: ParcelDelivered not published yet, trying again", "order", p.OrderID, "in", pause, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}
