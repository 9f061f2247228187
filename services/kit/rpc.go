package kit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Reply is what an endpoint answers: a result or an error.
type Reply struct {
	Result      json.RawMessage `json:"result,omitempty"`
	Error       string          `json:"error,omitempty"`
	Bad         bool            `json:"bad,omitempty"`         // the request was at fault
	Unavailable bool            `json:"unavailable,omitempty"` // try again later
	Conflict    bool            `json:"conflict,omitempty"`    // contradicts what the service has
}

// ServeConcurrency is how many requests one Serve answers at once.
const ServeConcurrency = 64

// Serve answers requests on subject with fn, in a queue group so that the
// instances of a service share them, until ctx ends. Requests are
// answered concurrently, up to ServeConcurrency at once (one slow request,
// waiting on the broker, does not hold up the next); past that the
// subscription waits.
func Serve[Req, Res any](ctx context.Context, nc *nats.Conn, subject string, fn func(ctx context.Context, req Req) (Res, error)) error {
	slots := make(chan struct{}, ServeConcurrency)
	var inflight sync.WaitGroup
	sub, err := nc.QueueSubscribe(subject, subject, func(m *nats.Msg) {
		slots <- struct{}{}
		inflight.Add(1)
		go func() {
			defer func() { <-slots; inflight.Done() }()
			data, _ := json.Marshal(answer(ctx, m.Data, fn))
			_ = m.Respond(data)
		}()
	})
	if err != nil {
		return err
	}
	closed := make(chan struct{})
	sub.SetClosedHandler(func(string) { close(closed) }) // after the last callback
	<-ctx.Done()
	if err := sub.Drain(); err != nil {
		return err
	}
	<-closed // each request taken has its goroutine: they answer
	inflight.Wait()
	return nil
}

// answer is fn's reply to one request.
func answer[Req, Res any](ctx context.Context, data []byte, fn func(ctx context.Context, req Req) (Res, error)) Reply {
	var req Req
	if err := json.Unmarshal(data, &req); err != nil {
		return Reply{Error: "malformed request: " + err.Error(), Bad: true}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	res, err := fn(rctx, req)
	cancel()
	var bad BadRequest
	var unavailable Unavailable
	var conflict Conflict
	switch {
	case errors.As(err, &bad):
		return Reply{Error: bad.Msg, Bad: true}
	case errors.As(err, &unavailable):
		return Reply{Error: unavailable.Msg, Unavailable: true}
	case errors.As(err, &conflict):
		return Reply{Error: conflict.Msg, Conflict: true}
	case err != nil:
		return Reply{Error: err.Error()}
	}
	var rep Reply
	rep.Result, _ = json.Marshal(res)
	return rep
}

// Call sends a request to an endpoint and decodes its result. A refusal
// comes back as BadRequest.
func Call[Req, Res any](ctx context.Context, nc *nats.Conn, subject string, req Req) (Res, error) {
	var res Res
	data, err := json.Marshal(req)
	if err != nil {
		return res, err
	}
	m, err := nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return res, fmt.Errorf("%s: %w", subject, err)
	}
	var rep Reply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return res, fmt.Errorf("%s: bad reply: %w", subject, err)
	}
	if rep.Bad {
		return res, BadRequest{Msg: rep.Error}
	}
	if rep.Unavailable {
		return res, Unavailable{Msg: rep.Error}
	}
	if rep.Conflict {
		return res, Conflict{Msg: rep.Error}
	}
	if rep.Error != "" {
		return res, errors.New(rep.Error)
	}
	return res, json.Unmarshal(rep.Result, &res)
}
