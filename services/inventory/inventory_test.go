package inventory_test

import (
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/inventory"
)

func TestReserveIsAllOrNothingAndOnce(t *testing.T) {
	w := &inventory.Warehouse{Stock: map[string]int{"a": 5, "b": 1}, Reservations: map[string]*inventory.Reservation{}}
	now := time.Now()
	// b is short: nothing is taken, not even a.
	_, changed, err := w.Reserve("o1", []schemas.Item{{SKU: "a", Qty: 2}, {SKU: "b", Qty: 2}}, now)
	if !saga.IsAbort(err) || changed || w.Stock["a"] != 5 || w.Stock["b"] != 1 {
		t.Fatalf("short reservation: %v %v %v", err, changed, w.Stock)
	}
	r, changed, err := w.Reserve("o2", []schemas.Item{{SKU: "a", Qty: 2}, {SKU: "b", Qty: 1}}, now)
	if err != nil || !changed || w.Stock["a"] != 3 || w.Stock["b"] != 0 || r.Status != "reserved" {
		t.Fatalf("reservation: %v %v %v", err, changed, w.Stock)
	}
	// The same order again takes nothing more.
	if _, changed, err := w.Reserve("o2", []schemas.Item{{SKU: "a", Qty: 2}}, now); err != nil || changed || w.Stock["a"] != 3 {
		t.Fatalf("repeat: %v %v %v", err, changed, w.Stock)
	}
	if !w.Release("o2", now) || w.Stock["a"] != 5 || w.Stock["b"] != 1 || r.Status != "released" {
		t.Fatalf("release: %v", w.Stock)
	}
	if w.Release("o2", now) || w.Stock["a"] != 5 {
		t.Fatalf("second release gave stock back again: %v", w.Stock)
	}
	// A release before any reservation (its reserve timed out) gives
	// nothing back, and refuses a late reserve.
	if !w.Release("o3", now) || w.Stock["a"] != 5 {
		t.Fatalf("release of nothing: %v", w.Stock)
	}
	if _, _, err := w.Reserve("o3", []schemas.Item{{SKU: "a", Qty: 1}}, now); !saga.IsAbort(err) || w.Stock["a"] != 5 {
		t.Errorf("a late reserve after the release: %v %v", err, w.Stock)
	}
}
