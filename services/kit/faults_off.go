//go:build !choreofaults

package kit

import (
	"time"

	"github.com/choreo-go/choreo/saga"
)

// faultOptions is empty outside the fault-injection build.
func faultOptions() []saga.RunnerOption { return nil }

// Crash does nothing outside the fault-injection build.
func Crash(point, step string) {}

// ReconcileAfter is never set outside the fault-injection build.
func ReconcileAfter() (time.Duration, bool) { return 0, false }
