package kit

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
)

// On handles the events of a topic for a group: each is checked against
// its schema (an invalid one is dead-lettered) and decoded into T.
func On[T any](r *message.Router, bus *events.Bus, group, topic string, fn func(ctx context.Context, e T) error) error {
	typ := schemas.TypeOfTopic[topic]
	sub, err := bus.Subscriber(group)
	if err != nil {
		return err
	}
	r.AddConsumerHandler(group+"."+topic, topic, sub, func(msg *message.Message) error {
		if err := schemas.Validate(typ, msg.Payload); err != nil {
			return saga.Abort(fmt.Errorf("schema-invalid %s: %v", typ, err))
		}
		var v T
		if err := json.Unmarshal(msg.Payload, &v); err != nil {
			return saga.Abort(fmt.Errorf("undecodable payload: %w", err))
		}
		return fn(msg.Context(), v)
	})
	return nil
}

// RunRouter runs a watermill router until ctx ends.
func RunRouter(ctx context.Context, r *message.Router) error {
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-ctx.Done():
		_ = r.Close()
		<-errc
		return nil
	case err := <-errc:
		return err
	}
}
