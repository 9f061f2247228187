// Package option holds what the functional options of choreo's packages
// share: the checks of the values that several of them take (replicas,
// event sizes, sources, loggers, durations) and the way an option is made
// from a check and a setter, so that saga and saga/events say each once.
package option

import (
	"fmt"
	"log/slog"
	"time"
)

// Func is the shape of a package's option: it sets a field of O, or says
// why its value is invalid.
type Func[O any] func(*O) error

// New makes an option that sets its value with set, or, when check found
// the value invalid, returns check's error wrapped in invalid (the
// package's ErrInvalidOption).
func New[O any](invalid, check error, set func(*O)) Func[O] {
	return func(o *O) error {
		if check != nil {
			return fmt.Errorf("%w: %v", invalid, check)
		}
		set(o)
		return nil
	}
}

// Replicas checks a stream replica count: 1, 3 or 5.
func Replicas(n int) error {
	if n != 1 && n != 3 && n != 5 {
		return fmt.Errorf("replicas must be 1, 3 or 5, got %d", n)
	}
	return nil
}

// MaxEventSize checks an event size limit: at least 1 KiB.
func MaxEventSize(n int) error {
	if n < 1024 {
		return fmt.Errorf("max event size must be at least 1024 bytes, got %d", n)
	}
	return nil
}

// Source checks a CloudEvents source: not empty.
func Source(s string) error {
	if s == "" {
		return fmt.Errorf("empty source")
	}
	return nil
}

// Logger checks a logger: not nil.
func Logger(l *slog.Logger) error {
	if l == nil {
		return fmt.Errorf("nil logger")
	}
	return nil
}

// AtLeast checks that the duration named what is at least min.
func AtLeast(what string, d, min time.Duration) error {
	if d < min {
		return fmt.Errorf("%s must be at least %v, got %v", what, min, d)
	}
	return nil
}
