// Package saga declares sagas and runs them by event choreography on NATS
// JetStream: each step runs in the service that owns it, and a failure is
// undone by the compensations the flow declares, with no orchestrator.
//
// # Declaring
//
// A flow is shared code: a name, a version and steps, built with
// Define[In], In being the input its sagas start with. A step (NewStep)
// turns an input into a result; its types are checked by the compiler when
// a handler is bound, and Define checks that they chain. Parallel groups
// steps that run at once and join; Deadline bounds the saga. Steps are
// compensatable (the default), one Pivot, and Retriable steps after it.
// Owner and Undo name the service that runs a step and its compensation,
// so that tools can draw and check a flow from its definition (Flow.Steps).
//
// # Running
//
// A service makes a Client over its JetStream context (New), a Runner
// (NewRunner), binds its own steps with Handle, and calls Run. Every
// instance of a service shares the steps' durable consumers. Start starts
// a saga (its input's type checked by the compiler); Get, List, Watch and
// Timeline show where sagas stand, given the flow (or Named, for a flow
// known only by name). Runner.OnEnd is told of every saga that ends.
//
// # Phases
//
// Every event of a saga's log has a Phase (PhaseStart, PhaseDone,
// PhaseFailed, PhaseCompensated, ...): Event.Phase, WithOnRecorded and
// sagatest's timelines ("charge:compensated") use them. A handler call's
// Info.Phase is PhaseAction or PhaseCompensation.
//
// # What errors mean
//
// An action's nil error completes its step. Abort(err) is a business
// refusal: the saga compensates. Any other error is retried with the step's
// RetryPolicy; when attempts or the step's timeout run out, the saga
// compensates. Compensations are retried until their own policy runs out;
// then the saga is parked as compensation_failed, the command is
// dead-lettered, and Client.RetryCompensation resumes it.
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
// with the reason. Deadlines are JetStream message schedules, and so is
// the removal of an ended saga once its retention (WithRetention) has
// passed; a running or parked saga is never removed.
//
// # Permissions
//
// A service is trusted only for the steps it owns. Permissions derives,
// from the flows' definitions (Owner on each step, StartedBy on the flow),
// the NATS permissions of each service's identity: appending its own
// steps' outcomes, using its own durable consumers, reading sagas; never
// creating, purging or deleting a stream, nor touching another service's
// consumer. Reader is for identities that only query. An admin identity
// runs Provision (the streams) first; AuthorizationConfig renders the
// identities as a nats-server authorization block. Each identity connects
// with nats.CustomInboxPrefix(InboxPrefix(name)). Without authentication
// on the server nothing changes.
//
// # Testing
//
// Package saga/sagatest has an embedded server, wait and timeline helpers,
// a recorder of handler calls, and RunSweep, which aborts each step of a
// flow in turn and checks the compensations.
//
// # Layout
//
// For contributors: journal.go is the saga log (reading, appending with
// compare-and-set, emitting what a state makes due, dead-lettering);
// delivery.go is one delivered message and how it ends; decide.go holds
// the runner's decisions as pure functions of a state and an outcome;
// state.go the state and its transitions; codec.go and envelope.go the
// wire format (internal/wire names it); runner.go and client.go are the
// public faces.
package saga
