package shoptest

import (
	"context"
	"sync"
	"testing"
)

// Service is a function run by [Go]: a service's Run, say.
type Service struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	once   sync.Once
}

// Go runs run in a goroutine until the test ends or Stop. An error run
// returns fails the test when it ends, named name.
func Go(t testing.TB, name string, run func(ctx context.Context) error) *Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = run(ctx)
	}()
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
	return s
}

// Done is closed once run has returned.
func (s *Service) Done() <-chan struct{} { return s.done }

// Err waits for run to return and returns its error.
func (s *Service) Err() error {
	<-s.done
	return s.err
}

// Stop cancels run's context, waits for it to return and returns its
// error; calling it again returns the same error.
func (s *Service) Stop() error {
	s.once.Do(s.cancel)
	return s.Err()
}
