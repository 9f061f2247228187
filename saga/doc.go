// Package saga declares sagas and runs them by event choreography on NATS
// JetStream: each step runs in the service that owns it, and a failure is
// undone by the compensations the flow declares, with no orchestrator.
// This package is what a service author imports: declare, run, query.
// Its neighbours are for the other people around a running system:
// saga/access derives each service's broker permissions from the flows and
// provisions choreo's streams (a deployer's job), saga/ops retires
// versions, cancels sagas and handles dead letters (an operator's job),
// saga/describe draws flows and writes their AsyncAPI document, and
// saga/sagatest is the test kit.
//
// # Declaring
//
// A flow is shared code: a name, a version and steps, built with
// Define[In], In being the input its sagas start with. A step (NewStep)
// turns an input into a result; its types are checked by the compiler when
// a handler is bound, and Define checks that they chain (or that the
// earlier step InputFrom names gives what the step takes). Parallel groups
// steps that run at once and join; Deadline bounds the saga. Steps are
// compensatable (the default), one Pivot, and Retriable steps after it.
// Owner and Undo name the service that runs a step and its compensation:
// permissions, drawings and the operator tools derive from them
// (Flow.Describe).
//
// # Running
//
// A service makes a Client over its JetStream context (New, or Open where
// an admin provisioned the streams), a Runner (NewRunner), binds its own
// steps with Handle, and calls Run. Every instance of a service shares the
// steps' durable consumers. Start starts a saga (its input's type checked
// by the compiler); Get, List, Watch and Timeline show where sagas stand,
// given the flow (or Named, for a flow known only by name). Runner.OnEnd is
// told of every saga that ends.
//
// # Waiting on the outside world
//
// A step declared WaitsFor(party, timeout) may end later than its action:
// the action hands CompletionToken(ctx) to whoever will answer (a bank, a
// customer's browser, a warehouse) and returns Later; the step waits
// (StepWaiting, with whom it waits on and until when) and any process with
// the owner's identity completes it:
//
//	// in the action
//	bank.Ask3DS(ctx, o.OrderID, saga.CompletionToken(ctx))
//	return saga.Later[PaymentCharged]()
//
//	// in the bank's callback, any instance, any time
//	err := Charge.Complete(ctx, client, token, PaymentCharged{PaymentID: id})
//
// Step.Fail reports a failure instead (Abort compensates; another error
// runs the action again after its backoff). A step declared CompletesOn
// completes when a domain event of package events names its saga:
//
//	Deliver = saga.NewStep[Booked, ParcelDelivered]("deliver", saga.Retriable(),
//		saga.WaitsFor("carrier", 72*time.Hour), saga.CompletesOn("parcel.delivered", "order_id"))
//
// The timeout is a broker-side timer (it fires with every process gone):
// the step is tried again while its retries last, then a compensatable
// step is compensated, a pivot fails and a retriable step keeps trying.
// When the saga compensates while a step waits, the wait ends and the step
// is compensated; a completion after that gets ErrCompensated and must undo
// its effect itself. sagatest.Clock moves a test's time.
//
// Start with At(t) or After(d) starts a saga later: it is recorded at once
// with status scheduled (List and the tools show it, and State.Scheduled
// when it begins), nothing runs, and a broker-side schedule, which no
// process restart loses, has a runner of the flow append its begin then;
// its deadline counts from the begin. Cancelled before (ops.Client.Cancel),
// it ends compensated with nothing run.
//
// A step may run another flow as a child saga: declare it in the parent
// flow with NewChild and bind it in its owner's runner with HandleChild:
//
//	pack := saga.NewChild("pack", packing, saga.Owner("orders"))
//	order := saga.MustDefine[Order]("order", 1, reserve, pack, charge)
//	saga.HandleChild(r, pack) // no handler: it starts the child and waits
//
// The child (id ChildID(order's id, "pack"), State.Parent naming the step)
// runs in its own services; its end completes the step with a ChildResult,
// or, compensated, fails it so the parent compensates. When the parent
// compensates after the child completed, the child is reverted: its own
// compensations run, and the step is compensated once the child is.
//
// # Finding sagas
//
// A flow declares a few search attributes among its items, typed and
// computed from its input (Attr, NumberAttr: by the process that starts
// the saga) or from a step's result (ResultAttr, ResultNumberAttr: by the
// step's owner). Client.Find selects sagas by them (a Filter's Where:
// ParseCond("total>100")) from a search index, reading only the sagas
// that match; Get shows them in State.Attrs. They are stored in the clear:
// declare no secret as one. docs/operating.md says how they are indexed
// and what that costs.
//
// # What errors mean
//
// An action's nil error completes its step. Abort(err) is a business
// refusal: the saga compensates. Any other error is retried with the
// step's RetryPolicy; when attempts or the step's timeout run out, the saga
// compensates. Compensations are retried until their own policy runs out;
// then the saga is parked as compensation_failed, the command is
// dead-lettered, and an operator resumes it (ops.Client.RetryCompensation).
//
// # Versions
//
// A flow changes while its sagas are in flight (a saga can live for days),
// so a saga runs to its end on the version it started with: the version
// is a token of every subject a saga uses, and each version's steps have
// consumers of their own. Define the new version beside the old one, with
// the same name, reusing the step values that did not change:
//
//	v1 := saga.MustDefine[Trip]("trip", 1, Book, Hotel)
//	v2 := saga.MustDefine[Trip]("trip", 2, Book, Car, Hotel) // a step inserted
//
// Handle(r, Book, ...) then binds Book in both versions; a runner serves
// every version of the steps it binds (ServeVersions limits that, for the
// instances of a rolling upgrade). Two versions are compatible when the
// steps they share (by name) have the same input and result types and
// kind: Define refuses a version that disagrees (give the changed step a
// new name). Start starts exactly the version it is given: defining v2
// changes nothing for code that starts v1, and code that wants v2 names
// it (in a rolling upgrade, old builds start the old version and new
// builds the new one). Get, List and Timeline show each saga's Version,
// and Get marks a step no runner of the saga's version is attached to
// (Unserved, Waiting), so a saga whose version nobody serves is visible,
// not silently stranded. Retiring a version is an operator's explicit act
// (package ops): Start then refuses it with ErrRetired, and never starts
// another version in its place.
//
// # Inserting a step
//
// A step takes the result of the single step before it (the first step,
// and a step after a Parallel group, take the flow's input), unless it
// says where its input comes from: InputFrom(s) takes earlier step s's
// result, FlowInput() the flow's input. Define checks that s comes before
// the step and that the types match. The step after one declared so still
// takes its result: the chain goes on from position to position. So a
// step inserted between Flight (Trip -> FlightBooked) and Hotel
// (FlightBooked -> HotelBooked) may have a result of its own, when Hotel
// says it takes the flight's:
//
//	Seat := saga.NewStep[FlightBooked, SeatChosen]("seat")
//	Hotel := saga.NewStep[FlightBooked, HotelBooked]("hotel", saga.InputFrom(Flight))
//	v2 := saga.MustDefine[Trip]("trip", 2, Flight, Seat, Hotel)
//
// Hotel is unchanged in version 1 (where the flight is the step before
// it), so it is still shared. Without InputFrom, Define refuses the
// version ("step "hotel" takes FlightBooked but is given SeatChosen"). A
// handler reads any earlier result, or the flow's input, with ResultOf and
// InputOf; the compensation gets the same input as the action.
//
// # Phases
//
// Every event of a saga's log has a Phase (PhaseStart, PhaseDone,
// PhaseFailed, PhaseCompensated, ...): Event.Phase, WithOnRecorded and
// sagatest's timelines ("charge:compensated") use them. A handler call's
// Info.Phase is PhaseAction or PhaseCompensation.
//
// # Guarantees
//
// A saga's log is its state: every event is appended with compare-and-set
// over the saga's subjects and carries the state it produces, so the state
// change and the event are one message. Every publish has a deterministic
// Nats-Msg-Id or is a compare-and-set append (which cannot be stored
// twice), and every handler call an IdempotencyKey; a redelivered or
// duplicated trigger of a completed step does not run it again.
// Compensations run in reverse order of completion, parallel members
// together, never before their action finished, never for a step that did
// not complete. Messages choreo cannot process go to the dead-letter stream
// with the reason. Deadlines and scheduled begins are JetStream message
// schedules, and so is
// the removal of an ended saga once its retention (WithRetention) has
// passed; a running or parked saga is never removed. Every event a process
// reads is checked against the saga's log before it is believed: an event
// that changes what its step and phase may not change is dead-lettered as
// forged (WithUncheckedEvents turns this off).
//
// # Observing
//
// WithTracerProvider sends OpenTelemetry spans (default: the global
// provider, a no-op until the program sets one): a saga is one trace, from
// Start through a span per action and compensation to the OnEnd handlers,
// its context carried in a traceparent header only when tracing is on, and
// its id kept in State.TraceID. WithObserver tells an Observer (metrics) of
// every handler call, recorded event and dead letter. WithLogger's lines
// about a message name its flow, saga, step, phase, attempt and trace id.
//
// # Testing
//
// Package saga/sagatest has an embedded server, wait and timeline helpers,
// a recorder of handler calls, and RunSweep, which aborts each step of a
// flow in turn and checks the compensations.
//
// # Layout
//
// For contributors: this package is a typed face over
// saga/internal/engine, which holds the saga log, the check of every event,
// the runner's decisions and the delivery of messages (its doc.go says
// which file holds what). The face turns typed handlers and payloads into
// the engine's bytes and the engine's state into State.
package saga
