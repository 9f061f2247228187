package events

import "github.com/choreo-go/choreo/saga/access"

// Access is what an identity needs on the event bus, to add to its saga
// permissions (access.Permissions): looking up the event streams (New does),
// publishing the topics it owns, and consuming, through its group's own
// durable consumers, the topics it subscribes to, dead-lettering what it
// cannot take. Nothing else: it cannot pull from another group's consumers
// nor publish another service's events.
func Access(group string, publishes, subscribes []string) access.Access {
	a := access.Access{Publish: access.Rules{Allow: []string{
		"$JS.API.STREAM.INFO." + Stream,
		"$JS.API.STREAM.INFO." + DeadLetterStream,
	}}}
	for _, t := range publishes {
		a.Publish.Allow = append(a.Publish.Allow, subjectPrefix+t)
	}
	for _, t := range subscribes {
		a.Add(access.Consume(Stream, ConsumerName(group, t)))
	}
	if len(subscribes) > 0 {
		a.Publish.Allow = append(a.Publish.Allow, deadPrefix+">")
	}
	a.Add(access.Access{}) // sorted
	return a
}

// ReadAccess lets reader's identity read every event through its own
// view consumers (OpenView: ViewConsumer(reader, 0) to
// ViewConsumers-1) and nothing else of the event streams: it can create,
// pull from, look up and delete those by name, but create no consumer of
// another name (the broker tells consumers apart only by the name in the
// API subject, so a right to $JS.API.CONSUMER.CREATE.<stream>.* would let
// it create durables of any name, and the nameless create subject would
// let it take over a group's consumer), touch no group's consumer, and
// read no dead letter (their payloads are no use to a read model).
func ReadAccess(reader string) access.Access {
	a := access.Access{Publish: access.Rules{Allow: []string{"$JS.API.STREAM.INFO." + Stream}}}
	if !validReader(reader) {
		return a
	}
	for i := range ViewConsumers {
		name := ViewConsumer(reader, i)
		a.Publish.Allow = append(a.Publish.Allow,
			"$JS.API.CONSUMER.CREATE."+Stream+"."+name, "$JS.API.CONSUMER.CREATE."+Stream+"."+name+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+Stream+"."+name, "$JS.API.CONSUMER.INFO."+Stream+"."+name,
			"$JS.API.CONSUMER.DELETE."+Stream+"."+name)
	}
	a.Add(access.Access{}) // sorted
	return a
}
