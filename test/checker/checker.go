// Package checker verifies the shop's invariants from the outside, after
// a run: it trusts neither the services' view of themselves nor the
// gateway, only the saga logs in the broker and the services' own ledgers.
//
//	I1 every saga whose start was acknowledged is terminal;
//	I2 no partial effects: a compensated order has no live charge,
//	   reservation, invoice or delivery, nor a parcel delivered; a
//	   completed order of a version with a deliver step (4) had its
//	   parcel delivered by the carrier;
//	I3 every side effect at most once (charge, refund, reservation,
//	   release, invoice, void, delivery, cancellation, the carrier's
//	   ParcelDelivered);
//	I4 no refund without a charge, no charge after its refund, no
//	   compensation before its action;
//	I5 saga state moves only along declared transitions.
//
// A step that waits (order flow version 4: charge waits for the
// customer's confirmation of a big order, deliver for the carrier's
// ParcelDelivered) ends its wait by a completion or by its timeout: a saga
// that ended with a step still waiting counts as lost (I1). The report
// counts the waits by how they ended (Confirmed, TimedOut, Delivered).
package checker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/billing"
	"github.com/choreo-go/choreo/services/inventory"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shipping"
)

// Report is what a check found.
type Report struct {
	Sagas          int
	Lost           int // I1: not terminal
	Stuck          int // I1: parked as compensation_failed
	PartialEffects int // I2
	DoubleEffects  int // I3
	OrderViolation int // I4
	BadTransitions int // I5
	// The waits of the checked sagas, by how they ended: a charge
	// confirmed by its customer, a wait that timed out (the step then
	// compensated, retried or failed, per its kind), a parcel delivered
	// (the deliver step completed on the carrier's event).
	Confirmed, TimedOut, Delivered int
	Problems                       []string
}

// OK reports whether no invariant was broken.
func (r Report) OK() bool {
	return r.Lost+r.Stuck+r.PartialEffects+r.DoubleEffects+r.OrderViolation+r.BadTransitions == 0
}

// Summary is the one-line summary of a scenario.
func (r Report) Summary(faults int) string {
	return fmt.Sprintf("sagas=%d faults=%d lost=%d double_effects=%d stuck=%d partial_effects=%d order_violations=%d bad_transitions=%d confirmed=%d timed_out=%d delivered=%d",
		r.Sagas, faults, r.Lost, r.DoubleEffects, r.Stuck, r.PartialEffects, r.OrderViolation, r.BadTransitions, r.Confirmed, r.TimedOut, r.Delivered)
}

func (r *Report) add(counter *int, format string, args ...any) {
	*counter++
	if len(r.Problems) < 50 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check checks the sagas of the given order ids.
func Check(ctx context.Context, d kit.Deps, ids []string) (Report, error) {
	r := Report{Sagas: len(ids)}
	charges, err := payment.Ledger(ctx, d)
	if err != nil {
		return r, err
	}
	w, err := inventory.State(ctx, d)
	if err != nil {
		return r, err
	}
	invoices, err := billing.Invoices(ctx, d)
	if err != nil {
		return r, err
	}
	deliveries, err := shipping.Deliveries(ctx, d)
	if err != nil {
		return r, err
	}
	parcels, err := Parcels(ctx, d)
	if err != nil {
		return r, err
	}
	for id, n := range parcels {
		if n > 1 {
			r.add(&r.DoubleEffects, "order %s: parcel delivered %d times", id, n)
		}
	}
	charge := map[string]payment.Charge{}
	for _, c := range charges {
		charge[c.OrderID] = c
		if c.Charges > 1 || c.Refunds > 1 {
			r.add(&r.DoubleEffects, "order %s: %d charges, %d refunds", c.OrderID, c.Charges, c.Refunds)
		}
		if c.Refunds > c.Charges || (c.Status == "refunded" && c.RefundedAt.Before(c.ChargedAt)) {
			r.add(&r.OrderViolation, "order %s: refund without (or before) its charge", c.OrderID)
		}
	}
	invoice := map[string]billing.Invoice{}
	for _, i := range invoices {
		invoice[i.OrderID] = i
		if i.Issued > 1 || i.Voided > 1 {
			r.add(&r.DoubleEffects, "order %s: invoice issued %d, voided %d times", i.OrderID, i.Issued, i.Voided)
		}
	}
	delivery := map[string]shipping.Delivery{}
	for _, dl := range deliveries {
		delivery[dl.OrderID] = dl
		if dl.Scheduled > 1 || dl.Cancelled > 1 {
			r.add(&r.DoubleEffects, "order %s: delivery scheduled %d, cancelled %d times", dl.OrderID, dl.Scheduled, dl.Cancelled)
		}
	}
	for _, res := range w.Reservations {
		if res.Reserved > 1 || res.Released > 1 {
			r.add(&r.DoubleEffects, "order %s: reserved %d, released %d times", res.OrderID, res.Reserved, res.Released)
		}
	}
	for _, id := range ids {
		var st *saga.State
		err := patiently(ctx, func() (err error) { st, err = d.Sagas.Get(ctx, schemas.OrderFlow, id); return err })
		if err != nil {
			r.add(&r.Lost, "order %s: no saga: %v", id, err)
			continue
		}
		switch st.Status {
		case saga.StatusCompleted, saga.StatusCompensated:
		case saga.StatusCompensationFailed:
			r.add(&r.Stuck, "order %s: compensation_failed: %s", id, st.Reason)
		default:
			r.add(&r.Lost, "order %s: still %s%s", id, st.Status, waitingOn(st))
		}
		if w := waitingOn(st); w != "" && st.Status.Terminal() {
			r.add(&r.Lost, "order %s: %s%s", id, st.Status, w)
		}
		if st.Status == saga.StatusCompensated {
			if c, ok := charge[id]; ok && c.Status == "charged" {
				r.add(&r.PartialEffects, "order %s compensated with a live charge", id)
			}
			if res := w.Reservations["res-"+id]; res != nil && res.Status == "reserved" {
				r.add(&r.PartialEffects, "order %s compensated with a live reservation", id)
			}
			if i, ok := invoice[id]; ok && i.Status == "issued" {
				r.add(&r.PartialEffects, "order %s compensated with a live invoice", id)
			}
			if dl, ok := delivery[id]; ok && dl.Status == "scheduled" {
				r.add(&r.PartialEffects, "order %s compensated with a live delivery", id)
			}
			if parcels[id] > 0 {
				r.add(&r.PartialEffects, "order %s compensated with its parcel delivered", id)
			}
		}
		if st.Status == saga.StatusCompleted {
			if c := charge[id]; c.Status != "charged" {
				r.add(&r.PartialEffects, "order %s completed but its charge is %q", id, c.Status)
			}
			if dv := st.Step("deliver"); dv != nil && (dv.Status != saga.StepCompleted || parcels[id] != 1) {
				r.add(&r.PartialEffects, "order %s completed with deliver %s and %d parcels delivered", id, dv.Status, parcels[id])
			}
		}
		var evs []saga.Event
		if err := patiently(ctx, func() (err error) { evs, err = d.Sagas.Timeline(ctx, schemas.OrderFlow, id); return err }); err != nil {
			return r, err
		}
		checkTimeline(&r, id, evs)
	}
	return r, nil
}

// waitingOn says which of st's steps still wait, if any.
func waitingOn(st *saga.State) string {
	out := ""
	for _, s := range st.Steps {
		if s.Status == saga.StepWaiting {
			out += fmt.Sprintf(" (%s waiting on %s until %s)", s.Name, s.WaitingOn, s.WaitUntil.Format(time.RFC3339Nano))
		}
	}
	return out
}

// Parcels counts the carrier's ParcelDelivered events by order id: every
// one the CHOREO_EVENTS stream holds (a publish retried within the
// broker's duplicate window is stored once, so two here are two
// deliveries).
func Parcels(ctx context.Context, d kit.Deps) (map[string]int, error) {
	out := map[string]int{}
	var c jetstream.Consumer
	err := patiently(ctx, func() (err error) {
		c, err = d.JS.CreateConsumer(ctx, events.Stream, jetstream.ConsumerConfig{
			FilterSubject: "events." + schemas.TopicParcelDelivered, AckPolicy: jetstream.AckNonePolicy,
			DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: time.Minute, MemoryStorage: true})
		return err
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return out, nil // no event was ever published
	}
	if err != nil {
		return nil, fmt.Errorf("parcels: %w", err)
	}
	defer func() { _ = d.JS.DeleteConsumer(context.WithoutCancel(ctx), events.Stream, c.CachedInfo().Name) }()
	left := c.CachedInfo().NumPending
	for left > 0 {
		batch, err := c.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("parcels: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var e schemas.ParcelDelivered
			if err := json.Unmarshal(m.Data(), &e); err == nil && e.OrderID != "" {
				out[e.OrderID]++
			} // else no delivery: poison, which its readers dead-letter
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("parcels: %w", err)
		}
		if got == 0 {
			return nil, fmt.Errorf("parcels: %d events announced, not delivered", left)
		}
		left -= uint64(got)
	}
	return out, nil
}

// patiently calls read until it succeeds or finds nothing, for up to 30s:
// a cluster that has just lost a node or a leader answers some reads with
// "no responders" for a while, and one failed read among thousands must
// not fail the check, or count a saga as lost.
func patiently(ctx context.Context, read func() error) error {
	var err error
	for range 30 {
		if err = read(); err == nil || errors.Is(err, saga.ErrNotFound) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second): // the broker recovering
		}
	}
	return err
}

// phaseWaiting is the phase of a step that waits (its action returned
// saga.Later): the engine's, which the saga package does not name.
const phaseWaiting saga.Phase = "waiting"

var sagaMoves = map[saga.Status][]saga.Status{
	saga.StatusScheduled:          {saga.StatusRunning, saga.StatusCompensated}, // begun, or cancelled before
	saga.StatusRunning:            {saga.StatusRunning, saga.StatusCompleted, saga.StatusCompensating, saga.StatusCompensated},
	saga.StatusCompensating:       {saga.StatusCompensating, saga.StatusCompensated, saga.StatusCompensationFailed},
	saga.StatusCompensationFailed: {saga.StatusCompensating},
}

// stepMoves are the declared step transitions. A reader sees a completed
// or unknown step whose compensation is due as compensating (a view: the
// log stores it completed or unknown), so every move into completed or
// unknown may show as one into compensating when the saga compensates, and
// compensating leads where those led.
var stepMoves = map[saga.StepStatus][]saga.StepStatus{
	saga.StepPending:            {saga.StepRunning},
	saga.StepRunning:            {saga.StepCompleted, saga.StepFailed, saga.StepSkipped, saga.StepUnknown, saga.StepCompensating, saga.StepWaiting},
	saga.StepWaiting:            {saga.StepCompleted, saga.StepFailed, saga.StepUnknown, saga.StepCompensating, saga.StepRunning, saga.StepWaiting},
	saga.StepCompleted:          {saga.StepCompensating, saga.StepCompensated, saga.StepCompensationFailed},
	saga.StepUnknown:            {saga.StepCompensating, saga.StepCompensated, saga.StepCompensationFailed},
	saga.StepCompensating:       {saga.StepCompensated, saga.StepCompensationFailed},
	saga.StepCompensationFailed: {saga.StepCompleted, saga.StepCompensating},
}

// checkTimeline checks I4 (no compensation before its action) and I5
// (only declared transitions) on one saga's log.
func checkTimeline(r *Report, id string, evs []saga.Event) {
	done := map[string]bool{}
	waiting := map[string]bool{} // steps whose wait has not ended
	var prev *saga.State
	for i, e := range evs {
		switch {
		case e.Phase == phaseWaiting && waiting[e.Step]:
			// Waiting again: the wait timed out and the step (a
			// retriable one) asked again.
			r.TimedOut++
		case e.Phase == phaseWaiting:
			waiting[e.Step] = true
		case !waiting[e.Step]:
		case e.Phase == saga.PhaseDone:
			waiting[e.Step] = false
			if e.Step == "deliver" {
				r.Delivered++
			} else {
				r.Confirmed++
			}
		case e.Phase == saga.PhaseTimedOut, e.Phase == saga.PhaseFailed, e.Phase == saga.PhaseAbandoned:
			// No answer in time (or the saga compensated meanwhile).
			waiting[e.Step] = false
			r.TimedOut++
		case e.Phase == saga.PhaseRetry:
			waiting[e.Step] = false // failed by its completer: it runs again
		}
		switch e.Phase {
		case saga.PhaseDone:
			done[e.Step] = true
		case saga.PhaseTimedOut, saga.PhaseAbandoned:
			done[e.Step] = true // its effect is unknown: compensating it is right
		case saga.PhaseCompensated:
			if !done[e.Step] {
				r.add(&r.OrderViolation, "order %s: %s compensated before its action finished", id, e.Step)
			}
		}
		st := e.State
		if prev != nil {
			if st.Status != prev.Status && !slices.Contains(sagaMoves[prev.Status], st.Status) {
				r.add(&r.BadTransitions, "order %s: saga %s -> %s at %s", id, prev.Status, st.Status, e)
			}
			for j := range st.Steps {
				a, b := prev.Steps[j].Status, st.Steps[j].Status
				if a != b && !slices.Contains(stepMoves[a], b) {
					r.add(&r.BadTransitions, "order %s: step %s %s -> %s at %s", id, st.Steps[j].Name, a, b, e)
				}
			}
		} else if e.Phase != saga.PhaseStart || (st.Status != saga.StatusRunning && st.Status != saga.StatusScheduled) {
			r.add(&r.BadTransitions, "order %s: log starts with %s (%s)", id, e, st.Status)
		}
		if st.Events != i+1 {
			r.add(&r.BadTransitions, "order %s: event %d (%s) says it is event %d", id, i+1, e, st.Events)
		}
		prev = st
	}
}
