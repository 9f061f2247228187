package saga

import (
	"fmt"
	"reflect"

	"github.com/choreo-go/choreo/saga/internal/engine"
)

// ChildResult is the result of a step that runs a child saga (NewChild):
// the child that completed.
type ChildResult struct {
	Flow    string `json:"flow"`
	Version int    `json:"version"`
	ID      string `json:"id"`
	Status  Status `json:"status"`
}

// NewChild declares a step that runs flow child as a child saga, with the
// step's input as the child's input. Declare it in the parent flow like
// any step, with the Owner of the service that runs it, and bind it there
// with HandleChild (no handler of yours: the step's action starts the
// child, id ChildID(parent's id, name), and waits for its end). The
// child's end settles the step: a completed child completes it with a
// ChildResult; a compensated child fails it (Abort), so the parent
// compensates; a child parked as compensation_failed fails it too, and
// stays parked for an operator. When the parent compensates after the
// child completed, the step's compensation reverts the child: its
// completed steps are compensated by their own services, and the step is
// compensated once the child is. A child still running then is cancelled.
//
// The step waits on "child flow <name>" for DefaultChildWait unless opts
// hold WaitsFor(party, timeout) (its timeout counts). A compensatable step
// (the default) needs a child flow whose steps are all compensatable (a
// child past its pivot cannot be undone): Define refuses one with a
// pivot; make the step a Pivot (or Retriable after one) to run such a
// flow. Keep the child flow's retention (WithRetention) longer than its
// parents may compensate: an expired child cannot be reverted.
func NewChild[In any](name string, child *Flow[In], opts ...StepOption) *Step[In, ChildResult] {
	var def *engine.FlowDef
	if child != nil {
		def = child.def
	}
	opts = append(opts[:len(opts):len(opts)], engine.RunsChild(def))
	return &Step[In, ChildResult]{def: engine.NewStep(name, reflect.TypeFor[In](), reflect.TypeFor[ChildResult](), opts...)}
}

// DefaultChildWait is how long a step that runs a child saga waits for the
// child's end, when its options give no WaitsFor timeout.
const DefaultChildWait = engine.DefaultChildWait

// ChildID is the id of the child saga that step runs in the saga of id
// parentID: "<parentID>-<step>" (shortened with a hash past 128
// characters).
func ChildID(parentID, step string) string { return engine.ChildID(parentID, step) }

// HandleChild binds s, a step that runs a child saga (NewChild), in runner
// r: the runner starts the child and settles s with the child's end, read
// through a durable consumer of the child flow's log
// (<child>__parent_<flow>_<step>, which access.Permissions grants the
// step's owner). It returns what Handle returns, and ErrInvalidOption for
// a step declared with NewStep.
func HandleChild[In any](r *Runner, s *Step[In, ChildResult]) error {
	if r == nil || s == nil {
		return fmt.Errorf("%w: nil runner or step", ErrInvalidOption)
	}
	return r.e.BindChild(s.step())
}
