// Package access derives, from the flows' definitions, what each service's
// identity may do on the broker, and provisions what only an admin may
// create. A service is trusted only for the steps it owns: it may append
// its own steps' outcomes, use its own durable consumers and read sagas;
// never create, purge or delete a stream, nor touch another service's
// consumer.
//
// Permissions gives each service (Owner on each step, StartedBy on the
// flow) its Access; Reader is for identities that only query. An admin
// identity runs Provision (the streams) first; AuthorizationConfig renders
// the identities as a nats-server authorization block. Each identity
// connects with nats.CustomInboxPrefix(InboxPrefix(name)). Without
// authentication on the server nothing changes.
package access

import (
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/internal/engine"

	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// Rules are the subjects an identity may use (Allow) and may not (Deny);
// a subject matching both is denied, as in nats-server.
type Rules struct {
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// Access is what one identity may do on the broker, in nats-server's
// terms: the subjects it may publish to and subscribe to, and whether it
// may answer requests (a request/reply endpoint). The zero value may do
// nothing.
type Access struct {
	Publish   Rules `json:"publish"`
	Subscribe Rules `json:"subscribe"`
	Responses bool  `json:"allow_responses,omitempty"`
}

// Add merges b into a: the union of both sets of subjects, kept sorted.
func (a *Access) Add(b Access) {
	a.Publish.Allow = union(a.Publish.Allow, b.Publish.Allow)
	a.Publish.Deny = union(a.Publish.Deny, b.Publish.Deny)
	a.Subscribe.Allow = union(a.Subscribe.Allow, b.Subscribe.Allow)
	a.Subscribe.Deny = union(a.Subscribe.Deny, b.Subscribe.Deny)
	a.Responses = a.Responses || b.Responses
}

func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// InboxPrefix is the inbox prefix of an identity's connection
// (nats.CustomInboxPrefix): the replies to its requests, and the messages
// it pulls, arrive there, and Permissions lets only that identity
// subscribe to it, so no service reads another's replies.
func InboxPrefix(identity string) string { return wire.InboxPrefix(identity) }

// jsAPI is the default JetStream API prefix: permissions name it.
const jsAPI = "$JS.API."

// Permissions derives, from the flows' definitions, what each service's
// identity needs and no more, keyed by service: the owners of the steps
// (Owner) and the services that start sagas (StartedBy). A service may:
//
//   - append its own steps' outcomes to the saga log
//     (choreo.log.<flow>.*.v<N>.<step>.*) and, if it starts the flow, a saga's
//     start; a participant also appends a saga's deadline and the begin
//     of a scheduled saga, which any runner of the flow handles;
//   - publish the flow's compensation commands and timer schedules (a
//     command is only obeyed when the saga's log makes it due), and dead
//     letters under its own name (choreo.dlq.<flow>.<service>: the tools
//     show who wrote each);
//   - read saga logs by direct get, look up streams and consumers, and
//     delete single saga log and timer messages by sequence (what a runner
//     does to expire an ended saga and to quarantine a rogue event: it can
//     remove a saga's history, never append an outcome it does not own);
//   - create, pull from and acknowledge only its own durable consumers:
//     <flow>_v<N>_<step>_do and _undo of its steps (and _wait of a step
//     completed later, with its timer schedule choreo.sched.<flow>.*.<step>),
//     <flow>_v<N>__timers of the flows
//     it runs steps of, and <flow>__end_<service> (an OnEnd handler named
//     after the service);
//   - for a step that runs a child saga (saga.NewChild), on the child
//     flow's version: append a saga's start, revert and cancel (and the
//     compensation commands and schedule they make due), and read the
//     child's ends through <child>__parent_<flow>_<step>;
//   - attest the definitions of the flow versions it runs steps of, under
//     a registry key of its own (def.<flow>.v<N>.<service>): the tools
//     show a definition only when every participant that attested one
//     attested the same;
//   - write the search attributes it computes (saga.Attr: a starter
//     those of the input, a step's owner those of its result:
//     choreo.idx.<flow>.<attr>.*.*.<_saga or step> and
//     choreo.idx.<flow>._id.*.<attr>.*.<_saga or step>), and, as a
//     participant, delete the index entries of an expired saga;
//   - subscribe only under its own inbox prefix (InboxPrefix).
//
// It may not create, update, purge or delete a stream, nor touch another
// service's consumer. Provisioning (the streams: Provision) is an admin
// identity's job. Services that only query sagas (Get, List, Watch,
// Timeline, DeadLetters) take Reader. Permissions returns ErrInvalidFlow
// for a Named flow (it has no steps to derive from) and for a step without
// an Owner.
func Permissions(flows ...Definition) (map[string]Access, error) {
	defs, err := definitions(flows)
	if err != nil {
		return nil, err
	}
	out := map[string]Access{}
	grant := func(svc string, a Access) {
		cur := out[svc]
		cur.Add(a)
		out[svc] = cur
	}
	for _, f := range defs {
		participants := map[string]bool{}
		for _, d := range f.Steps {
			participants[d.Owner] = true
			own := []string{wire.LogFilter(f.Name, f.Version, d.Name, "*")}
			cons := []string{wire.DoConsumer(f.Name, f.Version, d.Name)}
			if d.Kind == describe.Compensatable {
				cons = append(cons, wire.UndoConsumer(f.Name, f.Version, d.Name))
			}
			a := Access{Publish: Rules{Allow: own}}
			for _, c := range cons {
				a.Add(Consume(wire.Stream, c))
			}
			if d.Wait > 0 {
				// A step completed later: its own timer, set and read by
				// its owner alone.
				a.Publish.Allow = append(a.Publish.Allow, wire.StepSchedSubject(f.Name, "*", d.Name))
				a.Add(Consume(wire.TimerStream, wire.WaitConsumer(f.Name, f.Version, d.Name)))
			}
			if d.OnTopic != "" {
				// Completed by a domain event: its own consumer of the topic.
				a.Add(Consume(wire.EventStream, wire.EventConsumer(f.Name, f.Version, d.Name)))
			}
			if d.Child != "" {
				a.Add(childAccess(f.Name, d))
			}
			grant(d.Owner, a)
		}
		for svc := range participants {
			a := Access{Publish: Rules{Allow: []string{
				wire.LogSubject(f.Name, "*", f.Version, wire.SagaStep, wire.PhaseDeadline),
				wire.LogSubject(f.Name, "*", f.Version, wire.SagaStep, wire.PhaseBegin),
				wire.Cmd + f.Name + ".*." + wire.Version(f.Version) + ".*." + wire.Undo,
				wire.DeadLetterSubject(f.Name, svc), wire.DeadLetterSubject(wire.Unnamed, svc),
				jsAPI + "STREAM.MSG.DELETE." + wire.Stream,
				jsAPI + "STREAM.MSG.DELETE." + wire.TimerStream,
				// An ended saga's expiry deletes its search attributes,
				// each found by its subject.
				jsAPI + "STREAM.MSG.DELETE." + wire.IndexStream,
				jsAPI + "DIRECT.GET." + wire.IndexStream,
				jsAPI + "DIRECT.GET." + wire.IndexStream + ".>",
				jsAPI + "STREAM.MSG.GET." + wire.IndexStream,
			}}}
			// Its own attestation of the flow's definition, and no one else's.
			a.Publish.Allow = append(a.Publish.Allow, "$KV."+wire.FlowsBucket+"."+wire.DefKey(f.Name, f.Version)+"."+svc)
			a.Add(Consume(wire.TimerStream, wire.TimerConsumer(f.Name, f.Version)))
			a.Add(Consume(wire.Stream, wire.EndConsumer(f.Name, svc)))
			grant(svc, a)
		}
		for _, svc := range f.StartedBy {
			grant(svc, Access{Publish: Rules{Allow: []string{wire.LogSubject(f.Name, "*", f.Version, wire.SagaStep, wire.PhaseStart)}}})
		}
		for _, a := range f.Attrs {
			// Each search attribute is written by who computes it: the
			// starters for one of the input, the step's owner for one of
			// its result; under the source it names, which readers check.
			if a.Step == "" {
				for _, svc := range f.StartedBy {
					grant(svc, Access{Publish: Rules{Allow: []string{
						wire.IndexSubject(f.Name, a.Name, "*", "*", wire.SagaStep), wire.IndexSagaSubject(f.Name, "*", a.Name, "*", wire.SagaStep)}}})
				}
				continue
			}
			if s, ok := f.Step(a.Step); ok {
				grant(s.Owner, Access{Publish: Rules{Allow: []string{
					wire.IndexSubject(f.Name, a.Name, "*", "*", a.Step), wire.IndexSagaSubject(f.Name, "*", a.Name, "*", a.Step)}}})
			}
		}
		for _, svc := range append(slices.Collect(maps.Keys(participants)), f.StartedBy...) {
			grant(svc, Access{Publish: Rules{Allow: []string{wire.Sched + f.Name + ".*"}}})
		}
	}
	for svc, a := range out {
		a.Add(Base(svc))
		out[svc] = a
	}
	return out, nil
}

// childAccess is what the owner of step d of flow parent, which runs a
// child saga (saga.NewChild), needs on the child flow's version: start
// its sagas (and set their deadline), read their ends through its own
// consumer, revert a completed child or cancel a running one when the
// parent compensates (and send the compensation commands that makes due),
// and dead-letter what it cannot read of the child's log. Nothing else of
// the child flow: its steps' outcomes stay their owners'.
func childAccess(parent string, d describe.Step) Access {
	c, v := d.Child, d.ChildVersion
	a := Access{Publish: Rules{Allow: []string{
		wire.LogSubject(c, "*", v, wire.SagaStep, wire.PhaseStart),
		wire.LogSubject(c, "*", v, wire.SagaStep, wire.PhaseReverted),
		wire.LogSubject(c, "*", v, wire.SagaStep, wire.PhaseCancelled),
		wire.Cmd + c + ".*." + wire.Version(v) + ".*." + wire.Undo,
		wire.Sched + c + ".*",
		wire.DeadLetterSubject(c, d.Owner),
		// The search attributes of the child's input, which it computes.
		wire.IndexSubject(c, "*", "*", "*", wire.SagaStep),
		wire.IndexSagaSubject(c, "*", "*", "*", wire.SagaStep),
	}}}
	a.Add(Consume(wire.Stream, wire.ChildEndConsumer(c, parent, d.Name)))
	return a
}

// Reader is what an identity that only queries the sagas of flows needs
// (Get, List, Watch, Timeline, Flows, Versions): direct gets on the saga
// log and on the flow registry, single and batched, which let it read
// every saga of every flow and the whole registry. It is Base and nothing
// more: it creates no consumer on any stream. The broker's permissions can
// only tell consumers apart by the name in the API subject, so a right to
// create ephemeral consumers ($JS.API.CONSUMER.CREATE.<stream>.*) is a
// right to create durable ones of any name (left behind for ever, or named
// as a service's future consumer); and the one subject without a name
// ($JS.API.CONSUMER.CREATE.<stream>) takes the name from the request, so
// that whoever may use it can turn any other service's durable consumer
// into an ephemeral one (and so delete it). The dead letters are not in it
// (ReadDeadLetters). The flows are checked as for Permissions; a Reader of
// no flow reads the same.
func Reader(identity string, flows ...Definition) (Access, error) {
	if _, err := definitions(flows); err != nil {
		return Access{}, err
	}
	return Base(identity), nil
}

// Operator is what an identity that pauses and resumes the flows given,
// their steps and their sagas (ops.Client.PauseStep, PauseSaga) and runs
// bulk acts on their sagas (ops.Client.Bulk: cancel, retry, pause, resume)
// needs, beyond Reader: the flow registry's pause and bulk keys, the
// broker's pause of the steps' action consumers
// ($JS.API.CONSUMER.PAUSE.<stream>.<consumer>), the operator's saga log
// events (choreo.log.<flow>.*.v<N>._saga.{paused,unpaused,cancelled,resume,noted})
// and the compensation commands and expiry timers they make due. Services
// (Permissions) get none of it: only the admin identity, or one given
// Operator, may pause. Bulk replay needs ReadDeadLetters too. The flows
// are checked as for Permissions.
func Operator(identity string, flows ...Definition) (Access, error) {
	defs, err := definitions(flows)
	if err != nil {
		return Access{}, err
	}
	kv := "$KV." + wire.FlowsBucket + "."
	a := Base(identity)
	a.Add(Access{Publish: Rules{Allow: []string{kv + "bulk.>"}}})
	for _, f := range defs {
		v := wire.Version(f.Version)
		allow := []string{
			kv + "pause." + f.Name + "." + v,
			kv + "pause." + f.Name + "." + v + ".*",
			wire.Cmd + f.Name + ".*." + v + ".*." + wire.Undo,
			wire.Sched + f.Name + ".*",
		}
		for _, ph := range []engine.Phase{engine.PhasePaused, engine.PhaseUnpaused, engine.PhaseCancelled, engine.PhaseResume, engine.PhaseNoted} {
			allow = append(allow, wire.LogSubject(f.Name, "*", f.Version, wire.SagaStep, string(ph)))
		}
		for _, d := range f.Steps {
			allow = append(allow,
				jsAPI+"CONSUMER.PAUSE."+wire.Stream+"."+wire.DoConsumer(f.Name, f.Version, d.Name),
				jsAPI+"CONSUMER.PAUSE."+wire.TimerStream+"."+wire.WaitConsumer(f.Name, f.Version, d.Name),
				jsAPI+"CONSUMER.PAUSE."+wire.EventStream+"."+wire.EventConsumer(f.Name, f.Version, d.Name))
		}
		a.Add(Access{Publish: Rules{Allow: allow}})
	}
	return a, nil
}

// ReadDeadLetters lets an identity read the dead letters (DeadLetters,
// LatestDeadLetters, DeadLetterAt): what an operator's read-only tool
// needs on top of Reader. Dead letters hold whole payloads of every flow
// (and what any participant chose to write there): Reader leaves them out.
func ReadDeadLetters() Access {
	a := ReadStream(wire.DeadLetterStream)
	a.Publish.Allow = append(a.Publish.Allow, jsAPI+"DIRECT.GET."+wire.DeadLetterStream, jsAPI+"STREAM.MSG.GET."+wire.DeadLetterStream)
	slices.Sort(a.Publish.Allow)
	return a
}

// ReadStream lets an identity read a stream through ordered consumers of
// its own (create, pull, look up, delete), but not through the durable
// consumers named, which belong to others: it can neither pull from them
// nor update, pause or delete them.
func ReadStream(stream string, durables ...string) Access {
	a := Access{Publish: Rules{Allow: []string{
		jsAPI + "STREAM.INFO." + stream,
		jsAPI + "CONSUMER.CREATE." + stream + ".*",
		jsAPI + "CONSUMER.CREATE." + stream + ".*.>",
		jsAPI + "CONSUMER.MSG.NEXT." + stream + ".*",
		jsAPI + "CONSUMER.DELETE." + stream + ".*",
		jsAPI + "CONSUMER.INFO." + stream + ".*",
	}}}
	for _, d := range durables {
		a.Publish.Deny = append(a.Publish.Deny,
			jsAPI+"CONSUMER.CREATE."+stream+"."+d, jsAPI+"CONSUMER.CREATE."+stream+"."+d+".>",
			jsAPI+"CONSUMER.MSG.NEXT."+stream+"."+d, jsAPI+"CONSUMER.DELETE."+stream+"."+d)
	}
	slices.Sort(a.Publish.Deny)
	return a
}

// Consume lets an identity create, look up, pull from and acknowledge one
// durable consumer of a stream: its own. Services add their other
// consumers (domain events, say) with it on top of Permissions.
func Consume(stream, durable string) Access {
	return Access{Publish: Rules{Allow: []string{
		jsAPI + "CONSUMER.CREATE." + stream + "." + durable,
		jsAPI + "CONSUMER.CREATE." + stream + "." + durable + ".>",
		jsAPI + "CONSUMER.INFO." + stream + "." + durable,
		jsAPI + "CONSUMER.MSG.NEXT." + stream + "." + durable,
		"$JS.ACK." + stream + "." + durable + ".>",
	}}}
}

// Answers lets an identity that serves requests (a request/reply
// endpoint, with Responses) answer the callers named on any of its
// connections: it may publish under their inbox prefixes (InboxPrefix).
// nats-server's allow_responses lets a reply out only on the connection
// the request came in on, for that one request; when the server that
// delivered it goes away before the answer (a node's failover), the
// answer leaves on the connection to another node, which never saw the
// request, and is refused ("Permissions Violation for Publish to
// _INBOX_…"). The callers' inboxes are theirs alone to read (Base), so
// the grant lets the responder write to them, never read from them.
func Answers(callers ...string) Access {
	var a Access
	for _, c := range callers {
		a.Publish.Allow = append(a.Publish.Allow, InboxPrefix(c)+".>")
	}
	slices.Sort(a.Publish.Allow)
	return a
}

// Base is what every identity that makes a Client needs: its inbox, the
// JetStream account info, looking up choreo's streams (New does), reading
// a saga and the flow registry by direct get (from the stream's leader
// too, on a cluster) and looking up consumers (Get marks unserved steps). Permissions and Reader
// include it.
func Base(identity string) Access {
	return Access{
		Publish: Rules{Allow: []string{
			jsAPI + "INFO",
			jsAPI + "STREAM.INFO." + wire.Stream,
			jsAPI + "STREAM.INFO." + wire.TimerStream,
			jsAPI + "STREAM.INFO." + wire.DeadLetterStream,
			// The search index is read from its subject list alone.
			jsAPI + "STREAM.INFO." + wire.IndexStream,
			jsAPI + "DIRECT.GET." + wire.Stream,
			jsAPI + "DIRECT.GET." + wire.Stream + ".>",
			jsAPI + "STREAM.MSG.GET." + wire.Stream,
			jsAPI + "CONSUMER.INFO." + wire.Stream + ".*",
			jsAPI + "STREAM.INFO.KV_" + wire.FlowsBucket,
			jsAPI + "DIRECT.GET.KV_" + wire.FlowsBucket,
			jsAPI + "DIRECT.GET.KV_" + wire.FlowsBucket + ".>",
		}},
		Subscribe: Rules{Allow: []string{InboxPrefix(identity) + ".>"}},
	}
}

// Definition is what permissions derive from: a flow's declared
// definition. Every *saga.Flow is one.
type Definition interface{ Describe() describe.Flow }

// definitions returns the flows' definitions, refusing what Permissions
// cannot derive from.
func definitions(flows []Definition) ([]describe.Flow, error) {
	var out []describe.Flow
	for _, f := range flows {
		if f == nil {
			return nil, fmt.Errorf("%w: nil flow", saga.ErrInvalidFlow)
		}
		fi := f.Describe()
		for _, s := range fi.Steps {
			if s.Owner == "" {
				return nil, fmt.Errorf("%w: flow %q: step %q has no Owner, so no service may run it", saga.ErrInvalidFlow, fi.Name, s.Name)
			}
		}
		out = append(out, fi)
	}
	return out, nil
}

// Identity is one user of the broker, for AuthorizationConfig: a name (a
// comment in the config), its nkey's public key, and its access (nil for
// an admin, who may do everything).
type Identity struct {
	Name   string
	NKey   string
	Access *Access
}

// AuthorizationConfig renders identities as a nats-server authorization
// block, to paste into a server's configuration file. There is no
// anonymous access: a client must present one of the nkeys.
func AuthorizationConfig(ids []Identity) string {
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	ids = slices.Clone(ids)
	sort.SliceStable(ids, func(i, j int) bool { return ids[i].Name < ids[j].Name })
	for _, id := range ids {
		fmt.Fprintf(&b, "    # %s\n    {\n      nkey: %s\n", id.Name, strconv.Quote(id.NKey))
		if a := id.Access; a != nil {
			b.WriteString("      permissions: {\n")
			rules := func(name string, r Rules) {
				fmt.Fprintf(&b, "        %s: {\n", name)
				for _, l := range []struct {
					key  string
					subs []string
				}{{"allow", r.Allow}, {"deny", r.Deny}} {
					if len(l.subs) == 0 {
						continue
					}
					fmt.Fprintf(&b, "          %s: [\n", l.key)
					for _, s := range l.subs {
						fmt.Fprintf(&b, "            %s\n", strconv.Quote(s))
					}
					b.WriteString("          ]\n")
				}
				b.WriteString("        }\n")
			}
			rules("publish", a.Publish)
			rules("subscribe", a.Subscribe)
			if a.Responses {
				b.WriteString("        allow_responses: true\n")
			}
			b.WriteString("      }\n")
		}
		b.WriteString("    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// Provision creates or updates choreo's streams with the options given, as
// New does: run it with an admin identity before the services start, when
// their identities may not create streams (Permissions). Each runner then
// creates its own durable consumers, which its identity may.
func Provision(ctx context.Context, js jetstream.JetStream, opts ...saga.Option) error {
	_, err := engine.New(ctx, js, opts...)
	return err
}

// The broker objects choreo uses: what Provision creates and the
// permissions name.
const (
	// StreamName is the stream that holds every saga's log and the
	// compensation commands.
	StreamName = wire.Stream
	// TimerStream holds the saga deadlines and the expiry of ended sagas:
	// broker-side message schedules and the timer events they fire.
	TimerStream = wire.TimerStream
	// DeadLetterStream holds what choreo could not process, with the
	// reason.
	DeadLetterStream = wire.DeadLetterStream
	// IndexStream is the search index: one subject per search attribute
	// of a saga (saga.Attr), stored in the clear.
	IndexStream = wire.IndexStream
	// FlowsBucket is the key-value bucket of the flow registry: the
	// definitions runners serve and the versions an operator retired.
	FlowsBucket = wire.FlowsBucket
)
