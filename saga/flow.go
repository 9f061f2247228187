package saga

import (
	"fmt"
	"reflect"
	"regexp"
	"time"
)

// StepKind classifies a step the way Garcia-Molina and Richardson do.
type StepKind string

const (
	// Compensatable steps come before the pivot and are undone, in reverse
	// order of completion, when the saga fails. This is the default.
	Compensatable StepKind = "compensatable"
	// Pivot is the go/no-go step: once it completes the saga can only go
	// forward. It has no compensation.
	PivotStep StepKind = "pivot"
	// Retriable steps follow the pivot: they are retried until they succeed
	// and are never compensated.
	RetriableStep StepKind = "retriable"
)

// RetryPolicy bounds the retries of an action or a compensation. Its zero
// value means the defaults: 5 attempts for an action and 25 for a
// compensation, backoff from 100ms doubling up to 5s (30s for compensations).
type RetryPolicy struct {
	MaxAttempts    int           // attempts in all, the first one included
	InitialBackoff time.Duration // wait after the first failure
	MaxBackoff     time.Duration // the cap the doubling stops at
}

func (p RetryPolicy) withDefaults(attempts int, max time.Duration) RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = attempts
	}
	if p.InitialBackoff == 0 {
		p.InitialBackoff = 100 * time.Millisecond
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = max
	}
	if p.MaxBackoff < p.InitialBackoff {
		p.MaxBackoff = p.InitialBackoff
	}
	return p
}

// backoff is the wait after the given failed attempt (1-based).
func (p RetryPolicy) backoff(attempt int) time.Duration {
	d := p.InitialBackoff
	for i := 1; i < attempt && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.MaxBackoff)
}

// StepOption configures a step. Each one checks its own value.
type StepOption func(*stepDef) error

// WithRetry sets the action's retry policy.
func WithRetry(p RetryPolicy) StepOption {
	return func(s *stepDef) error {
		if p.MaxAttempts < 0 || p.InitialBackoff < 0 || p.MaxBackoff < 0 {
			return fmt.Errorf("%w: retry policy values must not be negative", ErrInvalidOption)
		}
		s.retry = p
		return nil
	}
}

// WithCompensationRetry sets the compensation's retry policy. A compensation
// that fails MaxAttempts times parks the saga as compensation_failed.
func WithCompensationRetry(p RetryPolicy) StepOption {
	return func(s *stepDef) error {
		if p.MaxAttempts < 0 || p.InitialBackoff < 0 || p.MaxBackoff < 0 {
			return fmt.Errorf("%w: retry policy values must not be negative", ErrInvalidOption)
		}
		s.compRetry = p
		return nil
	}
}

// WithTimeout bounds the step, retries included, from the moment it is
// triggered. When it passes, the action's context is cancelled, the step is
// recorded unknown and the saga compensates, this step included: with no
// outcome in time (a crash after the effect, say) its effect is unknown, so
// its compensation runs with the zero output and must accept that there
// may be nothing to undo. A result the action still returns later is
// recorded and compensated too. Retriable and pivot steps ignore it.
func WithTimeout(d time.Duration) StepOption {
	return func(s *stepDef) error {
		if d <= 0 {
			return fmt.Errorf("%w: timeout must be positive, got %v", ErrInvalidOption, d)
		}
		s.timeout = d
		return nil
	}
}

// Pivot marks the step as the saga's point of no return.
func Pivot() StepOption {
	return func(s *stepDef) error { s.kind = PivotStep; return nil }
}

// Retriable marks a step after the pivot: retried until it succeeds, never
// compensated; saga.Abort from it is treated as a plain error.
func Retriable() StepOption {
	return func(s *stepDef) error { s.kind = RetriableStep; return nil }
}

// WithEventType sets the CloudEvents type of the step's result event. The
// default is the result type's Go name.
func WithEventType(t string) StepOption {
	return func(s *stepDef) error {
		if t == "" {
			return fmt.Errorf("%w: empty event type", ErrInvalidOption)
		}
		s.eventType = t
		return nil
	}
}

// Item is a member of a flow definition: a step, a Parallel group or a
// Deadline.
type Item interface{ flowItem() }

// stepDef is the untyped part of a step.
type stepDef struct {
	name      string
	kind      StepKind
	retry     RetryPolicy
	compRetry RetryPolicy
	timeout   time.Duration
	eventType string
	in, out   reflect.Type
	err       error // first option error, reported by Define

	flow *Flow
	pos  int
}

// typeName is the CloudEvents type for a payload type: its Go name, or its
// spelling for unnamed types.
func typeName(t reflect.Type) string {
	if t.Name() != "" {
		return t.Name()
	}
	return t.String()
}

// Step is one step of a flow: its action turns an In into an Out. Declare
// steps with NewStep, put them in a flow with Define, and give them an action
// (and compensation) with Handle in the service that owns them.
type Step[In, Out any] struct{ def *stepDef }

func (*Step[In, Out]) flowItem() {}

// Name returns the step's name.
func (s *Step[In, Out]) Name() string { return s.def.name }

// NewStep declares a step. The name must be 1 to 64 characters of
// [A-Za-z0-9_-] not starting with '_'; Define reports a bad name or option.
func NewStep[In, Out any](name string, opts ...StepOption) *Step[In, Out] {
	d := &stepDef{
		name: name,
		kind: Compensatable,
		in:   reflect.TypeFor[In](),
		out:  reflect.TypeFor[Out](),
	}
	for _, o := range opts {
		if err := o(d); err != nil && d.err == nil {
			d.err = err
		}
	}
	if d.eventType == "" {
		d.eventType = typeName(d.out)
	}
	return &Step[In, Out]{def: d}
}

type stepper interface {
	Item
	stepDef() *stepDef
}

func (s *Step[In, Out]) stepDef() *stepDef { return s.def }

// Group is a set of steps that run in parallel; the next step starts when
// all of them have completed. Make one with Parallel.
type Group struct{ steps []stepper }

func (Group) flowItem() {}

// Parallel groups steps that run at the same time. Every member takes the
// same input as a single step in its place would. The step after a group
// takes the flow's input (the members' results are available through
// ResultOf).
func Parallel(steps ...stepper) Group { return Group{steps: steps} }

type deadlineItem time.Duration

func (deadlineItem) flowItem() {}

// Deadline bounds the whole saga: when it passes before the saga completes
// (and before its pivot completed), the saga compensates. The deadline is a
// broker-side timer (a JetStream message schedule): it fires even if every
// process that took part in the saga is gone.
func Deadline(d time.Duration) Item { return deadlineItem(d) }

// Flow is a named, versioned list of steps. It is shared code: every
// participant compiles the same definition and runs only its own steps.
type Flow struct {
	name      string
	version   int
	deadline  time.Duration
	positions [][]*stepDef
	steps     []*stepDef
	byName    map[string]*stepDef
	input     reflect.Type
	inputType string // CloudEvents type of the start event
}

// Name returns the flow's name.
func (f *Flow) Name() string { return f.name }

// Version returns the flow's version.
func (f *Flow) Version() int { return f.version }

// Deadline returns the saga deadline, 0 for none.
func (f *Flow) Deadline() time.Duration { return f.deadline }

// StepKind returns the kind of the named step, "" if the flow has none.
func (f *Flow) StepKind(name string) StepKind {
	if d := f.byName[name]; d != nil {
		return d.kind
	}
	return ""
}

// Steps returns the step names, grouped by position: a group is one inner
// slice with several names.
func (f *Flow) Steps() [][]string {
	out := make([][]string, len(f.positions))
	for i, p := range f.positions {
		for _, s := range p {
			out[i] = append(out[i], s.name)
		}
	}
	return out
}

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Define checks and builds a flow. Items are steps, Parallel groups and at
// most one Deadline, in order. It returns an error wrapping ErrInvalidFlow
// (or ErrInvalidOption) when the flow cannot run.
func Define(name string, version int, items ...Item) (*Flow, error) {
	bad := func(format string, args ...any) (*Flow, error) {
		return nil, fmt.Errorf("%w: flow %q: %w", ErrInvalidFlow, name, fmt.Errorf(format, args...))
	}
	if !tokenRE.MatchString(name) {
		return bad("name must be 1-64 characters of [A-Za-z0-9_-], starting with a letter or digit")
	}
	if version < 1 {
		return bad("version must be 1 or more, got %d", version)
	}
	f := &Flow{name: name, version: version, byName: map[string]*stepDef{}}
	add := func(pos []*stepDef, s stepper) ([]*stepDef, error) {
		if s == nil || s.stepDef() == nil {
			return nil, fmt.Errorf("nil step")
		}
		d := s.stepDef()
		if d.err != nil {
			return nil, fmt.Errorf("step %q: %w", d.name, d.err)
		}
		if !tokenRE.MatchString(d.name) {
			return nil, fmt.Errorf("step name %q must be 1-64 characters of [A-Za-z0-9_-], starting with a letter or digit", d.name)
		}
		if d.flow != nil {
			return nil, fmt.Errorf("step %q already belongs to flow %q", d.name, d.flow.name)
		}
		if _, dup := f.byName[d.name]; dup {
			return nil, fmt.Errorf("two steps named %q", d.name)
		}
		f.byName[d.name] = d
		return append(pos, d), nil
	}
	for _, it := range items {
		var pos []*stepDef
		var err error
		switch v := it.(type) {
		case deadlineItem:
			if v <= 0 || f.deadline != 0 {
				return bad("one positive Deadline at most")
			}
			f.deadline = time.Duration(v)
			continue
		case Group:
			if len(v.steps) == 0 {
				return bad("empty Parallel group")
			}
			for _, s := range v.steps {
				if pos, err = add(pos, s); err != nil {
					return bad("%w", err)
				}
			}
		case stepper:
			if pos, err = add(pos, v); err != nil {
				return bad("%w", err)
			}
		default:
			return bad("unknown item %T", it)
		}
		f.positions = append(f.positions, pos)
	}
	if len(f.positions) == 0 {
		return bad("no steps")
	}
	f.input = f.positions[0][0].in
	f.inputType = typeName(f.input)
	pivotAt := -1
	for i, pos := range f.positions {
		want := f.input
		if i > 0 && len(f.positions[i-1]) == 1 {
			want = f.positions[i-1][0].out
		}
		for _, d := range pos {
			if d.in != want {
				return bad("step %q takes %v but is given %v (after a single step, a step takes that step's result; first and after a Parallel group, the flow's input)", d.name, d.in, want)
			}
			switch d.kind {
			case PivotStep:
				if len(pos) > 1 {
					return bad("pivot %q cannot be inside a Parallel group", d.name)
				}
				if pivotAt >= 0 {
					return bad("two pivots")
				}
				pivotAt = i
			case RetriableStep:
				if pivotAt < 0 || pivotAt == i {
					return bad("retriable step %q must come after the pivot", d.name)
				}
			default:
				if pivotAt >= 0 {
					return bad("step %q after the pivot must be Retriable", d.name)
				}
			}
		}
	}
	for i, pos := range f.positions {
		for _, d := range pos {
			d.flow, d.pos = f, i
			f.steps = append(f.steps, d)
		}
	}
	return f, nil
}

// MustDefine is Define that panics on error, for package-level flow
// variables whose definition is fixed at compile time.
func MustDefine(name string, version int, items ...Item) *Flow {
	f, err := Define(name, version, items...)
	if err != nil {
		panic(err)
	}
	return f
}

// typeOf is the event type choreo appends for a log event of step and
// phase ("" for a step the flow does not have).
func (f *Flow) typeOf(step, phase string) string {
	switch {
	case step == sagaStep && phase == phaseStart:
		return f.inputType
	case phase == phaseDone:
		if d := f.byName[step]; d != nil {
			return d.eventType
		}
		return ""
	}
	return eventTypeFor(phase)
}
