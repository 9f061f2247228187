package shoptest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/choreo-go/choreo/services/shop"
)

// Shop is a shop run in this process by [shop.Run] until Stop.
type Shop struct {
	*shop.Shop
	// Base is the gateway's URL: "http://" + HTTPAddr.
	Base string

	once sync.Once
	stop func()
	err  error
}

// Stop ends the shop and returns Run's error; calling it again returns
// the same error.
func (s *Shop) Stop() error {
	s.once.Do(s.stop)
	return s.err
}

// StartShop runs the shop with cfg until Stop, outside a test (a shop
// several tests share). It returns once the shop serves, or with its
// error, or after a minute.
func StartShop(cfg shop.Config) (*Shop, error) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *shop.Shop, 1)
	done := make(chan error, 1)
	go func() { done <- shop.Run(ctx, cfg, func(s *shop.Shop) { ready <- s }) }()
	select {
	case sh := <-ready:
		s := &Shop{Shop: sh, Base: "http://" + sh.HTTPAddr}
		s.stop = func() { cancel(); s.err = <-done }
		return s, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("shop did not start: %w", err)
	case <-time.After(60 * time.Second):
		cancel()
		<-done
		return nil, errors.New("shop did not start in 60s")
	}
}

// RunShop runs the shop with cfg until the test ends (or Stop), and fails
// the test if it does not start or if Run ends with an error.
func RunShop(t testing.TB, cfg shop.Config) *Shop {
	t.Helper()
	s, err := StartShop(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("shop: %v", err)
		}
	})
	return s
}
