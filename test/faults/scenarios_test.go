package faults_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Scenario 1: kill -9 a participant at each crash point. Every participant
// dies the n-th time it reaches the point for its step (n drawn from the
// seed, again at each restart), and for the compensations too; its
// supervisor restarts it.
func TestCrashAtEachPoint(t *testing.T) {
	steps := map[string][]string{
		"payment":   {"charge", "charge.undo"},
		"inventory": {"reserve", "reserve.undo"},
		"billing":   {"invoice", "invoice.undo"},
		"shipping":  {"schedule", "schedule.undo"},
		"order":     {"confirm"},
	}
	for _, point := range []string{"start", "effect", "ack"} {
		t.Run(point, func(t *testing.T) {
			h := newHarness(t, setup{supervise: true, env: func(h *harness, svc string, n int) []string {
				var specs []string
				for _, step := range steps[svc] {
					specs = append(specs, fmt.Sprintf("%s:%s:%d", point, step, 3+h.intn(25)))
				}
				if len(specs) == 0 {
					return nil
				}
				return []string{"CHOREO_CRASH=" + strings.Join(specs, ",")}
			}})
			l := h.startLoad(scale(150), 40)
			rep := h.settle(l, 2*time.Minute)
			if h.crashes.Load() < 5 {
				t.Errorf("only %d crashes at %s: the scenario proves little", h.crashes.Load(), point)
			}
			_ = rep
		})
	}
}

// Scenario 8: several instances of each service, some killed (kill -9)
// under load and started again.
func TestInstancesKilledUnderLoad(t *testing.T) {
	h := newHarness(t, setup{instances: map[string]int{"order": 2, "payment": 3, "inventory": 3, "billing": 2, "shipping": 3, "notification": 2}})
	l := h.startLoad(scale(400), 50)
	stop := make(chan struct{})
	killable := []string{"order", "payment", "inventory", "billing", "shipping", "notification"}
	wg := h.every(400*time.Millisecond, stop, func() {
		svc := killable[h.intn(len(killable))]
		ins := h.insts[svc]
		in := ins[h.intn(len(ins))]
		in.hold()
		h.faults.Add(1)
		go func() {
			time.Sleep(time.Duration(200+h.intn(800)) * time.Millisecond) // how long it stays dead
			in.start()
		}()
	})
	for l.running() {
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for _, ins := range h.insts {
		for _, in := range ins {
			if in.proc().exited() {
				in.start()
			}
		}
	}
	h.settle(l, 2*time.Minute)
}
