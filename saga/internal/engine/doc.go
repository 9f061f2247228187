// Package engine runs sagas: the untyped machinery under package saga's
// typed face, and under the tools beside it (saga/ops, saga/access).
//
// Files by noun, each using only files below it in this list:
//
//   - errors.go, pool.go, trace.go: sentinels, the worker pool, the trace
//     context carried in headers.
//   - flow.go, attrs.go: a flow's definition (FlowDef, StepDef) and
//     Define's checks; its search attributes (AttrDef).
//   - state.go: a saga's State and its transitions; decide.go: the
//     runner's decisions, pure functions of a state and an outcome, and
//     those about a flow version (whether Start refuses it, when a report
//     reads it drained).
//   - codec.go, envelope.go: the wire format of a state and of a message;
//     crypt.go: the key ring, and the sealing of payloads and of errors'
//     texts (WithKeyRing).
//   - observe.go, options.go: what a client is told (Observer) and how it
//     is configured.
//   - registry.go: the flow registry bucket; journal.go: the saga log's
//     reads and caches; check.go: the check that every event follows from
//     the log before it; index.go: the search index's entries, written
//     (before the event they come from), listed and deleted; append.go:
//     appending with compare-and-set, emitting what a state makes due,
//     dead-lettering; sweep.go: arming again a step's timer whose fire the
//     broker lost.
//   - client.go, query.go, start.go: a client, its queries and starting a
//     saga (now or, scheduled, later); waits.go: completion tokens and
//     settling a step completed later from outside its action
//     (Settle), and the span of such a completion; versions.go, deadletters.go, pause.go, bulk.go, counts.go, doctor.go: the
//     operator's acts and reports (pause.go: pausing a flow version, a
//     step or a saga; bulk.go: an act on every saga a Filter selects);
//     search.go: finding sagas by a Filter (filter.go) from the search
//     index (Find), and a saga's attributes.
//   - runner.go, runopts.go: a runner and its options; delivery.go: one
//     delivered message and how it ends; handlers.go: the kinds of
//     message a runner handles (a step's trigger, its compensation, the
//     saga's timer, a step's own timer, a domain event that completes a
//     step, a saga's end); children.go: steps that run a child saga, and
//     the ends that settle them; consume.go: the consume loop and the
//     runner's lifecycle.
package engine
