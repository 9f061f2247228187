package e2e_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/carrier"
)

// confirmTimeout is how long a big order waits for its customer's
// confirmation in these tests. The order flow reads it where it is built,
// before any test runs, so TestMain runs the tests again in a process
// whose environment has it (and a quick carrier).
const confirmTimeout = "3s"

func TestMain(m *testing.M) {
	if os.Getenv(schemas.ConfirmTimeoutEnv) == "" {
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = append(os.Environ(), schemas.ConfirmTimeoutEnv+"="+confirmTimeout, carrier.DelayEnv+"=300ms")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				os.Exit(ee.ExitCode())
			}
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
