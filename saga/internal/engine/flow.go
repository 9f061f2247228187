package engine

import (
	"github.com/choreo-go/choreo/saga/describe"

	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/choreo-go/choreo/internal/wire"
)

// StepKind classifies a step (describe.StepKind).
type StepKind = describe.StepKind

const (
	CompensatableStep = describe.Compensatable
	PivotStep         = describe.Pivot
	RetriableStep     = describe.Retriable
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

// ValidID reports whether id can name a saga: 1 to 128 characters of
// [A-Za-z0-9_-], so that it is one NATS subject token.
func ValidID(id string) bool { return len(id) >= 1 && len(id) <= 128 && wire.IDChars(id) }

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

// Pivot marks the step as the saga's point of no return. A pivot has no
// compensation: Handle refuses one with ErrInvalidOption.
func Pivot() StepOption {
	return func(s *stepDef) error { s.kind = PivotStep; return nil }
}

// Owner names the service that runs the step (its action and its
// compensation). It is what diagrams, permissions and the operator tools
// derive from the flow, so declare it on every step of a shared flow.
func Owner(service string) StepOption {
	return func(s *stepDef) error {
		if !wire.Token(service) {
			return fmt.Errorf("%w: owner %q must be 1-64 characters of [A-Za-z0-9_-]", ErrInvalidOption, service)
		}
		s.owner = service
		return nil
	}
}

// Undo names the step's compensation in the domain's words ("refund" for a
// charge), for diagrams and the operator tools. Only compensatable steps
// have one; Define refuses it on a pivot or retriable step.
func Undo(name string) StepOption {
	return func(s *stepDef) error {
		if name == "" {
			return fmt.Errorf("%w: empty compensation name", ErrInvalidOption)
		}
		s.undo = name
		return nil
	}
}

// Retriable marks a step after the pivot: retried until it succeeds, never
// compensated; saga.Abort from it is treated as a plain error. Handle
// refuses a compensation for it with ErrInvalidOption.
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

// WaitsFor declares a step completed later: its action may start it and
// return ErrLater, and its outcome then comes from outside (Complete or
// Fail with the step's completion token, a domain event, a child saga)
// within timeout, a broker-side timer. party says who it waits on
// ("customer", "carrier"), for the tools.
func WaitsFor(party string, timeout time.Duration) StepOption {
	return func(s *stepDef) error {
		if !wire.Token(party) {
			return fmt.Errorf("%w: the party a step waits for must be 1-64 characters of [A-Za-z0-9_-], got %q", ErrInvalidOption, party)
		}
		if timeout <= 0 {
			return fmt.Errorf("%w: a wait's timeout must be positive, got %v", ErrInvalidOption, timeout)
		}
		s.waitOn, s.waitFor = party, timeout
		return nil
	}
}

// InputFrom makes the step's input the result of src, a step at an
// earlier position of the same flow, instead of the chain's. Define
// checks that src is in the flow before the step and that its result is
// the step's input type.
func InputFrom(src *StepDef) StepOption {
	return func(s *stepDef) error {
		if src == nil {
			return fmt.Errorf("%w: InputFrom a nil step (a step variable used before it was set?)", ErrInvalidOption)
		}
		if s.from != nil || s.fromFlow {
			return fmt.Errorf("%w: a step takes its input from one place: InputFrom or FlowInput, once", ErrInvalidOption)
		}
		s.from = src
		return nil
	}
}

// CompletesOn declares that a step completed later (WaitsFor) completes
// when a domain event on topic (package events) names its saga: the event's
// JSON field field holds the saga id, and the event's payload is the step's
// result.
func CompletesOn(topic, field string) StepOption {
	return func(s *stepDef) error {
		if !eventTopic(topic) {
			return fmt.Errorf("%w: event topic %q must be dot-separated tokens of [A-Za-z0-9_-]", ErrInvalidOption, topic)
		}
		if field == "" {
			return fmt.Errorf("%w: empty event field", ErrInvalidOption)
		}
		s.onTopic, s.onField = topic, field
		return nil
	}
}

// FlowInput makes the step's input the flow's input (what its sagas
// start with), instead of the chain's. Define checks the type.
func FlowInput() StepOption {
	return func(s *stepDef) error {
		if s.from != nil || s.fromFlow {
			return fmt.Errorf("%w: a step takes its input from one place: InputFrom or FlowInput, once", ErrInvalidOption)
		}
		s.fromFlow = true
		return nil
	}
}

// eventTopic reports whether topic is one or more dot-separated tokens.
func eventTopic(topic string) bool {
	for _, t := range strings.Split(topic, ".") {
		if !wire.Token(t) {
			return false
		}
	}
	return topic != ""
}

// DefaultChildWait is how long a step that runs a child saga waits for the
// child's end when its options give no WaitsFor timeout.
const DefaultChildWait = 7 * 24 * time.Hour

// RunsChild declares a step that runs flow child as a child saga
// (children.go): a step completed later that waits on the child's end,
// for the timeout of a WaitsFor among the step's options (given before
// it), else DefaultChildWait.
func RunsChild(child *FlowDef) StepOption {
	return func(s *stepDef) error {
		if child == nil {
			return fmt.Errorf("%w: nil child flow", ErrInvalidOption)
		}
		s.child, s.waitOn = child, "child flow "+child.name
		if s.waitFor == 0 {
			s.waitFor = DefaultChildWait
		}
		if s.compRetry == (RetryPolicy{}) {
			// Its compensation waits for the child to compensate: about an
			// hour of tries before the parent is parked.
			s.compRetry = RetryPolicy{MaxAttempts: 720, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second}
		}
		return nil
	}
}

// Child returns the flow the step runs as a child saga, or nil.
func (d *stepDef) Child() *FlowDef {
	if d == nil {
		return nil
	}
	return d.child
}

// Waits reports whether the step is completed later (WaitsFor).
func (d *stepDef) Waits() bool { return d != nil && d.waitFor > 0 }

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
	owner     string
	undo      string
	waitOn    string        // WaitsFor: who it waits on
	waitFor   time.Duration // WaitsFor: how long
	onTopic   string        // CompletesOn: the event topic
	onField   string        // CompletesOn: the event's field with the saga id
	child     *flowDef      // RunsChild: the flow it runs as a child saga
	in, out   reflect.Type
	err       error // first option error, reported by Define

	// Where the input comes from: the template of the step named by
	// InputFrom, or the flow's input (FlowInput); neither for the chain.
	from     *stepDef
	fromFlow bool
	// source is, on an instance, the step whose result is its input (nil
	// for the flow's input), and chained whether that is the chain's
	// (what a step declared with neither option takes). Set by Define.
	source  *stepDef
	chained bool

	// A Step value holds its template; Define makes an instance of it for
	// each flow version the step is in (flow and pos set), and lists them
	// in the template's uses.
	flow *flowDef
	pos  int
	uses []*stepDef
}

// typeName is the CloudEvents type for a payload type: its Go name, or its
// spelling for unnamed types.
func typeName(t reflect.Type) string {
	if t.Name() != "" {
		return t.Name()
	}
	return t.String()
}

// StepDef is a declared step: the untyped part of the face's Step[In, Out].
type StepDef = stepDef

func (*stepDef) flowItem() {}

// Name returns the step's name.
func (d *stepDef) Name() string {
	if d == nil {
		return ""
	}
	return d.name
}

// Bound reports whether the step is part of a defined flow.
func (d *stepDef) Bound() bool { return d != nil && len(d.uses) > 0 }

// NewStep declares a step turning an in into an out. The name must be 1 to
// 64 characters of [A-Za-z0-9_-] not starting with '_'; Define reports a bad
// name or option.
func NewStep(name string, in, out reflect.Type, opts ...StepOption) *StepDef {
	d := &stepDef{name: name, kind: CompensatableStep, in: in, out: out}
	for _, o := range opts {
		if err := o(d); err != nil && d.err == nil {
			d.err = err
		}
	}
	if d.eventType == "" {
		d.eventType = typeName(d.out)
	}
	return d
}

// Group is a set of steps that run in parallel.
type Group struct{ steps []*stepDef }

func (Group) flowItem() {}

// Parallel groups steps that run at the same time.
func Parallel(steps ...*StepDef) Group { return Group{steps: steps} }

type deadlineItem time.Duration

func (deadlineItem) flowItem() {}

// Deadline bounds the whole saga.
func Deadline(d time.Duration) Item { return deadlineItem(d) }

// startedBy is the StartedBy item of a flow.
type startedBy []string

func (startedBy) flowItem() {}

// StartedBy names the services that start the flow's sagas.
func StartedBy(services ...string) Item { return startedBy(services) }

// flowDef is the untyped part of a flow.
type flowDef struct {
	name      string
	version   int
	starters  []string
	deadline  time.Duration
	positions [][]*stepDef
	steps     []*stepDef
	byName    map[string]*stepDef
	input     reflect.Type
	inputType string     // CloudEvents type of the start event
	attrs     []*AttrDef // search attributes (attrs.go)
}

// FlowDef is a defined flow: the untyped part of the face's Flow[In].
type FlowDef = flowDef

// FlowRef names a flow: a *FlowDef, or Named for a flow known by name.
type FlowRef interface {
	Name() string
	flowRef() (name string, def *flowDef)
}

// Named refers to a flow by its name.
func Named(name string) FlowRef { return namedFlow(name) }

type namedFlow string

func (n namedFlow) Name() string                { return string(n) }
func (n namedFlow) flowRef() (string, *flowDef) { return string(n), nil }

func (f *flowDef) flowRef() (string, *flowDef) {
	if f == nil {
		return "", nil
	}
	return f.name, f
}

// Name returns the flow's name.
func (f *flowDef) Name() string { return f.name }

// Version returns the flow's version.
func (f *flowDef) Version() int { return f.version }

// Starters returns the services declared to start the flow's sagas.
func (f *flowDef) Starters() []string { return slices.Clone(f.starters) }

// Deadline returns the saga deadline, 0 for none.
func (f *flowDef) Deadline() time.Duration { return f.deadline }

// StepNames returns the names of the flow's steps in order.
func (f *flowDef) StepNames() []string {
	out := make([]string, 0, len(f.steps))
	for _, d := range f.steps {
		out = append(out, d.name)
	}
	return out
}

// Define checks and builds a flow whose sagas start with an In. Items are
// steps, Parallel groups, at most one Deadline and StartedBy, in order. The first
// position's steps take In; after a single step, the next takes that step's
// result; after a group, the flow's In again. A step declared with
// InputFrom takes the named earlier step's result instead, one declared
// with FlowInput the flow's In; the step after it still takes its result
// (the chain goes on from position to position). It returns an error wrapping
// ErrInvalidFlow (or ErrInvalidOption) when the flow cannot run: a bad or
// duplicate name, a nil step, types that do not chain (or do not match the
// input InputFrom or FlowInput names), InputFrom naming a step that is not
// earlier in the flow, a pivot inside a
// group or not before every retriable step, a compensatable step after the
// pivot, or a step that already belongs to another flow.
//
// A step value may be reused in another version of the same flow (not in
// another flow): Handle then binds its handlers in every version. Versions
// of one flow defined in a process must agree on the steps they share:
// the same input and result types and the same kind. Define checks this
// against every other version defined before.
func Define(name string, version int, input reflect.Type, items ...Item) (*FlowDef, error) {
	bad := func(format string, args ...any) (*flowDef, error) {
		return nil, fmt.Errorf("%w: flow %q: %w", ErrInvalidFlow, name, fmt.Errorf(format, args...))
	}
	if !wire.Token(name) {
		return bad("name must be 1-64 characters of [A-Za-z0-9_-], starting with a letter or digit")
	}
	if version < 1 {
		return bad("version must be 1 or more, got %d", version)
	}
	f := &flowDef{name: name, version: version, byName: map[string]*stepDef{}}
	var templates []*stepDef
	var attrs []*AttrDef
	instance := map[*stepDef]*stepDef{} // by template
	add := func(pos []*stepDef, tmpl *stepDef) ([]*stepDef, error) {
		if tmpl == nil {
			return nil, fmt.Errorf("nil step (a step variable used before it was set?)")
		}
		d := new(stepDef)
		*d = *tmpl
		d.uses = nil
		if d.err != nil {
			return nil, fmt.Errorf("step %q: %w", d.name, d.err)
		}
		if !wire.Token(d.name) {
			return nil, fmt.Errorf("step name %q must be 1-64 characters of [A-Za-z0-9_-], starting with a letter or digit", d.name)
		}
		for _, u := range tmpl.uses {
			if u.flow.name != name {
				return nil, fmt.Errorf("step %q already belongs to flow %q: a step is reused only by another version of its flow", d.name, u.flow.name)
			}
		}
		if d.undo != "" && d.kind != CompensatableStep {
			return nil, fmt.Errorf("step %q is %s: it has no compensation to name", d.name, d.kind)
		}
		if d.onTopic != "" && d.waitFor == 0 {
			return nil, fmt.Errorf("step %q completes on event %s but does not wait: declare saga.WaitsFor too", d.name, d.onTopic)
		}
		if err := checkChild(name, d); err != nil {
			return nil, err
		}
		if _, dup := f.byName[d.name]; dup {
			return nil, fmt.Errorf("two steps named %q", d.name)
		}
		f.byName[d.name] = d
		instance[tmpl] = d
		templates = append(templates, tmpl)
		return append(pos, d), nil
	}
	for _, it := range items {
		var pos []*stepDef
		var err error
		switch v := it.(type) {
		case *AttrDef:
			attrs = append(attrs, v)
			continue
		case startedBy:
			for _, svc := range v {
				if !wire.Token(svc) {
					return bad("StartedBy %q must be 1-64 characters of [A-Za-z0-9_-]", svc)
				}
			}
			f.starters = append(f.starters, v...)
			continue
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
		case *stepDef:
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
	f.input = input
	f.inputType = typeName(f.input)
	pivotAt := -1
	earlier := map[*stepDef]bool{} // the instances at positions before i
	for i, pos := range f.positions {
		var chain *stepDef // the chain's input: the flow's, or the single step before
		if i > 0 && len(f.positions[i-1]) == 1 {
			chain = f.positions[i-1][0]
		}
		for _, d := range pos {
			if err := f.resolveInput(d, chain, instance, earlier); err != nil {
				return bad("%w", err)
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
		for _, d := range pos {
			earlier[d] = true
		}
	}
	if err := f.checkAttrs(attrs, instance); err != nil {
		return bad("%w", err)
	}
	if err := versions.check(f); err != nil {
		return bad("%w", err)
	}
	for i, pos := range f.positions {
		for _, d := range pos {
			d.flow, d.pos = f, i
			f.steps = append(f.steps, d)
		}
	}
	for i, d := range f.steps {
		templates[i].uses = append(templates[i].uses, d)
	}
	versions.add(f)
	return f, nil
}

// resolveInput sets where instance d's input comes from (d.source) and
// checks its type: the step its InputFrom names, which must be among the
// earlier instances; the flow's input for FlowInput; else chain, the
// chain's (nil for the flow's input).
func (f *flowDef) resolveInput(d, chain *stepDef, instance map[*stepDef]*stepDef, earlier map[*stepDef]bool) error {
	src := chain
	switch {
	case d.fromFlow:
		src = nil
	case d.from != nil:
		src = instance[d.from]
		switch {
		case src == nil && f.byName[d.from.name] != nil:
			return fmt.Errorf("step %q takes its input from step %q, but the flow's step %q is another step value: InputFrom names the step value the flow lists", d.name, d.from.name, d.from.name)
		case src == nil:
			return fmt.Errorf("step %q takes its input from step %q, which is not in the flow", d.name, d.from.name)
		case !earlier[src]:
			return fmt.Errorf("step %q takes its input from step %q, which does not come before it: InputFrom names a step at an earlier position", d.name, src.name)
		}
	}
	d.source, d.chained = src, src == chain
	want := f.input
	if src != nil {
		want = src.out
	}
	if d.in == want {
		return nil
	}
	switch {
	case d.fromFlow:
		return fmt.Errorf("step %q takes %v but the flow's input (FlowInput) is %v", d.name, d.in, want)
	case d.from != nil:
		return fmt.Errorf("step %q takes %v but step %q, its input (InputFrom), returns %v", d.name, d.in, src.name, want)
	}
	return fmt.Errorf("step %q takes %v but is given %v (after a single step, a step takes that step's result; first and after a Parallel group, the flow's input). To insert a step before %q, declare %q with saga.InputFrom(the step whose result it takes) or saga.FlowInput(), or have the inserted step take and return %v: see \"Inserting a step\" in package saga", d.name, d.in, want, d.name, d.name, d.in)
}

// inputType is the CloudEvents type of the step's input: its source's
// result type, or the flow's input type.
func (d *stepDef) inputType() string {
	if d.source != nil {
		return d.source.eventType
	}
	return d.flow.inputType
}

// checkChild says what is wrong with a step of flow that runs a child
// saga: a child of the same flow, an input the child does not start
// with, or a compensatable step whose child has a pivot (a child is
// compensated by reverting it, which only a saga whose steps are all
// compensatable allows).
func checkChild(flow string, d *stepDef) error {
	c := d.child
	switch {
	case c == nil:
		return nil
	case d.onTopic != "":
		return fmt.Errorf("step %q runs child flow %s: its end completes it, not an event", d.name, c.name)
	case c.name == flow:
		return fmt.Errorf("step %q runs its own flow %s as a child", d.name, flow)
	case c.input != d.in:
		return fmt.Errorf("step %q takes %v but child flow %s starts with %v", d.name, d.in, c.name, c.input)
	}
	if d.kind == CompensatableStep {
		for _, s := range c.steps {
			if s.kind != CompensatableStep {
				return fmt.Errorf("step %q is compensatable but child flow %s has %s step %q, so a completed child cannot be compensated: make the step a Pivot (or Retriable after one)", d.name, c.name, s.kind, s.name)
			}
		}
	}
	return nil
}

// versions holds every flow version defined in the process, to check that
// versions of one flow agree on the steps they share.
var versions = &versionBook{byName: map[string]map[int]*flowDef{}}

type versionBook struct {
	mu     sync.Mutex
	byName map[string]map[int]*flowDef
}

// check says how f disagrees with the other versions of its flow.
func (b *versionBook) check(f *flowDef) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for v, o := range b.byName[f.name] {
		if v == f.version {
			continue // a redefinition of the same version (a test's, say)
		}
		for name, d := range f.byName {
			od := o.byName[name]
			if od == nil {
				continue
			}
			if od.in != d.in || od.out != d.out || od.kind != d.kind {
				return fmt.Errorf("step %q is %s %v -> %v in version %d but %s %v -> %v in version %d: versions of a flow must agree on the steps they share (give the changed step a new name)",
					name, d.kind, d.in, d.out, f.version, od.kind, od.in, od.out, v)
			}
		}
	}
	return nil
}

func (b *versionBook) get(flow string, version int) *flowDef {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byName[flow][version]
}

// all returns the versions of flow defined in the process.
func (b *versionBook) all(flow string) []*flowDef {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Collect(maps.Values(b.byName[flow]))
}

func (b *versionBook) add(f *flowDef) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byName[f.name] == nil {
		b.byName[f.name] = map[int]*flowDef{}
	}
	b.byName[f.name][f.version] = f
}

// VersionStatus is whether new sagas may start on a flow version.
type VersionStatus string

// Version statuses.
const (
	VersionActive   VersionStatus = "active"   // sagas start on it
	VersionDraining VersionStatus = "draining" // no new sagas; those in flight finish
	VersionRetired  VersionStatus = "retired"  // no new sagas; those in flight were compensated
	// VersionDrained is a draining version with no saga left: its runners
	// may go. Reports say it (VersionReport.Drained has the time); the
	// bucket keeps "draining".
	VersionDrained VersionStatus = "drained"
)
