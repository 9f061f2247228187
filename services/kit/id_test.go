package kit_test

import (
	"testing"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/services/kit"
)

// Order ids must never repeat: a repeated one silently merges two orders
// (the second is deduplicated as the first). Lowercasing NUIDs did that.
func TestNewIDIsUniqueAndASagaID(t *testing.T) {
	seen := map[string]bool{}
	for range 200000 {
		id := kit.NewID("ord")
		if seen[id] {
			t.Fatalf("id %s repeated", id)
		}
		if !saga.ValidID(id) {
			t.Fatalf("id %s is not a valid saga id", id)
		}
		seen[id] = true
	}
}
