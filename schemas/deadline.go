//go:build !choreofaults

package schemas

import "time"

// orderDeadline bounds an order's saga: past it, the order is compensated.
var orderDeadline = 2 * time.Minute
