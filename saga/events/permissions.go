package events

import "github.com/choreo-go/choreo/saga"

// Access is what an identity needs on the event bus, to add to its saga
// permissions (saga.Permissions): looking up the event streams (New does),
// publishing the topics it owns, and consuming, through its group's own
// durable consumers, the topics it subscribes to, dead-lettering what it
// cannot take. Nothing else: it cannot pull from another group's consumers
// nor publish another service's events.
func Access(group string, publishes, subscribes []string) saga.Access {
	a := saga.Access{Publish: saga.Rules{Allow: []string{
		"$JS.API.STREAM.INFO." + Stream,
		"$JS.API.STREAM.INFO." + DeadLetterStream,
	}}}
	for _, t := range publishes {
		a.Publish.Allow = append(a.Publish.Allow, subjectPrefix+t)
	}
	for _, t := range subscribes {
		a.Add(saga.Consume(Stream, ConsumerName(group, t)))
	}
	if len(subscribes) > 0 {
		a.Publish.Allow = append(a.Publish.Allow, deadPrefix+">")
	}
	a.Add(saga.Access{}) // sorted
	return a
}

// ReadAccess lets an identity read every event through ordered consumers
// of its own (a read model replaying the stream), but not through the
// groups' durable consumers named: it can neither pull from them nor
// change or delete them.
func ReadAccess(durables ...string) saga.Access {
	return saga.ReadStream(Stream, durables...)
}
