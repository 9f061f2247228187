//go:build !choreofaults

package kit

import "github.com/choreo-go/choreo/saga"

// faultOptions is empty outside the fault-injection build.
func faultOptions() []saga.RunnerOption { return nil }
