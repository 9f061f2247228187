//go:build choreofaults

package schemas

import (
	"os"
	"time"
)

// orderDeadline bounds an order's saga. The fault-injection build (tag
// choreofaults, used only by test/faults) reads it from
// CHOREO_ORDER_DEADLINE so that a deadline can fire within a test.
var orderDeadline = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("CHOREO_ORDER_DEADLINE")); err == nil && d > 0 {
		return d
	}
	return 2 * time.Minute
}()
