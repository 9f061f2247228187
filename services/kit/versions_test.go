package kit_test

import (
	"testing"

	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
)

// A build starts orders on the newest order flow version it serves:
// saga.Start starts exactly that one, so a rolling upgrade's old build
// (CHOREO_ORDER_VERSIONS=1) keeps starting version 1.
func TestOrderFlowIsTheNewestServed(t *testing.T) {
	for env, want := range map[string]int{"": 4, "1": 1, "1,2": 2, "2": 2, " 2, 1 ": 2, "2,3": 3, "3": 3, "3,4": 4} {
		t.Run("CHOREO_ORDER_VERSIONS="+env, func(t *testing.T) {
			t.Setenv(kit.OrderVersionsEnv, env)
			f, err := kit.OrderFlow()
			if err != nil {
				t.Fatal(err)
			}
			if f.Version() != want || f.Name() != schemas.OrderFlow.Name() {
				t.Errorf("starts %s v%d, want v%d", f.Name(), f.Version(), want)
			}
		})
	}
	t.Setenv(kit.OrderVersionsEnv, "5")
	if _, err := kit.OrderFlow(); err == nil {
		t.Error("an unknown version is taken")
	}
}
