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

// ReadAccess lets an identity read every event through ordered consumers
// of its own (a read model replaying the stream), but not through the
// groups' durable consumers named: it can neither pull from them nor
// change or delete them.
func ReadAccess(durables ...string) access.Access {
	return access.ReadStream(Stream, durables...)
}
