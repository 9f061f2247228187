package schemas

import (
	"os"
	"time"
)

// The waits of version 4 of the order flow. A flow's definition must be
// the same in every process that runs it, so these are read here, from
// the environment, where the flow is built, and never from a service's
// own flags: give every process of the shop the same values.
const (
	// ConfirmTimeoutEnv is how long a big order's charge waits for the
	// customer's confirmation (a Go duration, default 2m) before it is
	// compensated.
	ConfirmTimeoutEnv = "CHOREO_CONFIRM_TIMEOUT"
	// DeliveryTimeoutEnv is how long the deliver step waits for the
	// carrier's ParcelDelivered (default 1m) before it asks again.
	DeliveryTimeoutEnv = "CHOREO_DELIVERY_TIMEOUT"
)

var (
	// ConfirmTimeout is how long a big order's charge waits for the
	// customer (ConfirmTimeoutEnv).
	ConfirmTimeout = envDuration(ConfirmTimeoutEnv, 2*time.Minute)
	// DeliveryTimeout is how long the deliver step waits for the carrier
	// each time it asks (DeliveryTimeoutEnv).
	DeliveryTimeout = envDuration(DeliveryTimeoutEnv, time.Minute)
)

// envDuration reads a positive duration from the environment, or def.
func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}
