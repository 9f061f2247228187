package option_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/choreo-go/choreo/internal/option"
)

var errInvalid = errors.New("invalid option")

type opts struct{ n int }

func TestNewSetsOrRefuses(t *testing.T) {
	var o opts
	if err := option.New(errInvalid, option.Replicas(3), func(o *opts) { o.n = 3 })(&o); err != nil || o.n != 3 {
		t.Errorf("valid value: %v, %+v", err, o)
	}
	err := option.New(errInvalid, option.Replicas(2), func(o *opts) { o.n = 2 })(&o)
	if !errors.Is(err, errInvalid) || o.n != 3 {
		t.Errorf("invalid value: %v, %+v (want the package's error and nothing set)", err, o)
	}
}

func TestChecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		ok   bool
	}{
		{"replicas 1", option.Replicas(1), true},
		{"replicas 5", option.Replicas(5), true},
		{"replicas 0", option.Replicas(0), false},
		{"replicas 4", option.Replicas(4), false},
		{"size 1024", option.MaxEventSize(1024), true},
		{"size 1023", option.MaxEventSize(1023), false},
		{"source", option.Source("order"), true},
		{"empty source", option.Source(""), false},
		{"logger", option.Logger(slog.Default()), true},
		{"nil logger", option.Logger(nil), false},
		{"at least", option.AtLeast("wait", time.Second, time.Second), true},
		{"under", option.AtLeast("wait", time.Second-1, time.Second), false},
	} {
		if (tc.err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, tc.err, tc.ok)
		}
	}
}
