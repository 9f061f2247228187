//go:build !choreofaults

package schemas

import (
	"time"

	"github.com/choreo-go/choreo/saga"
)

// orderDeadline bounds an order's saga: past it, the order is compensated.
var orderDeadline = 2 * time.Minute

// refundRetry is how a failing refund is retried: the defaults (25
// attempts, backoff up to 30s), then the saga is compensation_failed.
var refundRetry = saga.RetryPolicy{}
