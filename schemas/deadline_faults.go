//go:build choreofaults

package schemas

import (
	"os"
	"strconv"
	"time"

	"github.com/choreo-go/choreo/saga"
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

// refundRetry is how a failing refund is retried; CHOREO_REFUND_ATTEMPTS
// makes it park (compensation_failed) within a test.
var refundRetry = func() saga.RetryPolicy {
	if n, err := strconv.Atoi(os.Getenv("CHOREO_REFUND_ATTEMPTS")); err == nil && n > 0 {
		return saga.RetryPolicy{MaxAttempts: n, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	}
	return saga.RetryPolicy{}
}()
