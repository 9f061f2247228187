package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

type rawSys struct {
	js  jetstream.JetStream
	gen payloadGen
}

func (s *rawSys) start(ctx context.Context, id string) error {
	data, err := json.Marshal(s.gen(id))
	if err != nil {
		return err
	}
	_, err = s.js.Publish(ctx, "raw.0."+id, data)
	return err
}

// setupRaw wires the physical limit: n durable consumers, hop k reading
// raw.<k-1>.<id> and publishing the same payload to raw.<k>.<id>
// asynchronously, acknowledging after the PubAck, as a careful hand-written
// service would. It never decodes the payload.
//
// With connect (the per-service shape), each hop is a service of its own:
// its consumer and its publishes on a connection of its own, as choreo's
// services have.
func setupRaw(ctx context.Context, js jetstream.JetStream, connect func() (jetstream.JetStream, error), n, replicas int, gen payloadGen, done func(string)) (system, func(), error) {
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute, Replicas: replicas,
	}); err != nil {
		return nil, nil, err
	}
	var stops []func()
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	for hop := 1; hop <= n; hop++ {
		js := js
		if connect != nil {
			var err error
			if js, err = connect(); err != nil {
				stopAll()
				return nil, nil, err
			}
		}
		cons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{
			Durable: "hop" + strconv.Itoa(hop), FilterSubject: fmt.Sprintf("raw.%d.*", hop-1),
			AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 256,
		})
		if err != nil {
			stopAll()
			return nil, nil, err
		}
		next := fmt.Sprintf("raw.%d.", hop)
		cc, err := cons.Consume(func(m jetstream.Msg) {
			id := token(m.Subject(), 2)
			f, err := js.PublishAsync(next+id, m.Data(), jetstream.WithMsgID(next+id))
			if err != nil {
				_ = m.Nak()
				return
			}
			go func() {
				select {
				case <-f.Ok():
					_ = m.Ack()
				case <-f.Err():
					_ = m.Nak()
				}
			}()
		}, jetstream.PullMaxMessages(256))
		if err != nil {
			stopAll()
			return nil, nil, err
		}
		stops = append(stops, cc.Stop)
	}
	stopObs, err := observe(ctx, js, "RAW", fmt.Sprintf("raw.%d.*", n), 2, done)
	if err != nil {
		stopAll()
		return nil, nil, err
	}
	stops = append(stops, stopObs)
	return &rawSys{js: js, gen: gen}, stopAll, nil
}
