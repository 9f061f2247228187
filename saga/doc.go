// Package saga declares sagas and runs them by event choreography on NATS
// JetStream: each step runs in the service that owns it, and a failure is
// undone by the compensations the flow declares, with no orchestrator.
//
// # Declaring
//
// A flow is shared code: a name, a version and steps, built with Define.
// A step (NewStep) turns an input into a result; its types are checked by
// the compiler when a handler is bound, and Define checks that they chain.
// Parallel groups steps that run at once and join; Deadline bounds the
// saga. Steps are compensatable (the default), one Pivot, and Retriable
// steps after it.
//
// # Running
//
// A service makes a Client over its JetStream context (New), a Runner
// (NewRunner), binds its own steps with Handle, and calls Run. Every
// instance of a service shares the steps' durable consumers. Client.Start
// starts a saga; Get, List, Watch and Timeline show where sagas stand.
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
// Nats-Msg-Id, and every handler call an IdempotencyKey; a redelivered or
// duplicated trigger of a completed step does not run it again.
// Compensations run in reverse order of completion, parallel members
// together, never before their action finished, never for a step that did
// not complete. Messages choreo cannot process go to the dead-letter stream
// with the reason. Deadlines are JetStream message schedules.
//
// # Testing
//
// Package saga/sagatest has an embedded server, wait and timeline helpers,
// a recorder of handler calls, and RunSweep, which aborts each step of a
// flow in turn and checks the compensations.
package saga
