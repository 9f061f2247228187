package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/choreo-go/choreo/internal/httpjson"
	"github.com/choreo-go/choreo/schemas"
)

// follow pushes every saga change to the browsers.
func (s *Service) follow(ctx context.Context) error {
	ch, err := s.d.Sagas.Watch(ctx, schemas.OrderFlow)
	if err != nil {
		return err
	}
	for st := range ch {
		s.pushOrder(ctx, st.ID)
	}
	return nil
}

func (s *Service) pushOrder(ctx context.Context, id string) {
	if !s.hub.active() {
		return
	}
	v, ok := s.orderView(ctx, id)
	if !ok {
		return
	}
	// Only to its customer's browsers and the operator's: an order whose
	// customer is not known yet goes to the operator's alone.
	s.hub.broadcast(v.CustomerID, map[string]any{"type": "order", "order": v})
}

func (s *Service) pushStats() {
	if s.hub.active() {
		s.hub.broadcast(everyone, map[string]any{"type": "stats", "stats": s.rm.Load().Stats()})
	}
}

// wsAuth is what a browser sends on its websocket to say who it is (a
// browser cannot set a websocket's headers): the tokens of the customers
// it follows (a browser may hold several). A later one replaces it.
type wsAuth struct {
	Tokens []string `json:"tokens"`
}

// audience is whose orders a websocket gets.
type audience struct {
	operator  bool
	customers map[string]bool
}

func (a *audience) list() []string {
	out := make([]string, 0, len(a.customers))
	for id := range a.customers {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// audienceOf checks every token; one refused refuses them all.
func (s *Service) audienceOf(tokens []string) (*audience, error) {
	a := &audience{customers: map[string]bool{}}
	for _, t := range tokens {
		v, err := s.identify(t)
		if err != nil {
			return nil, err
		}
		a.operator = a.operator || v.operator
		if v.customer != "" {
			a.customers[v.customer] = true
		}
	}
	return a, nil
}

// ws upgrades to a websocket and pushes, until the browser goes, the
// counters to everyone and the changes of the orders its token may read:
// customers' (or every order, for the operator's). A token comes in the
// Authorization header of the upgrade or, from a browser, in a message
// {"tokens":["…"]}, answered {"type":"auth","customers":[ids],"operator":…};
// a bad one closes the socket with 4401.
func (s *Service) ws(w http.ResponseWriter, r *http.Request) {
	if n := s.wsConns.Add(1); n > int64(s.opts.maxWebsockets) {
		s.wsConns.Add(-1)
		w.Header().Set("Retry-After", "10")
		httpjson.Error(w, http.StatusServiceUnavailable, fmt.Sprintf("too many live connections (%d), try again later", s.opts.maxWebsockets))
		return
	}
	defer s.wsConns.Add(-1)
	// front has checked Origin already; Accept checks it again.
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	cl := s.hub.join()
	defer s.hub.leave(cl)
	if t := bearer(r); t != "" {
		a, err := s.audienceOf([]string{t})
		if err != nil {
			c.Close(statusBadToken, err.Error())
			return
		}
		cl.audience.Store(a)
	}
	ctx, cancel := context.WithCancel(r.Context())
	readDone := make(chan struct{})
	defer func() { cancel(); <-readDone }()
	go func() {
		defer close(readDone)
		defer cancel()
		c.SetReadLimit(4 << 10)
		for {
			_, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			var auth wsAuth
			if json.Unmarshal(msg, &auth) != nil || len(auth.Tokens) > maxWSTokens {
				c.Close(statusBadToken, fmt.Sprintf("want {\"tokens\":[…]}, at most %d", maxWSTokens))
				return
			}
			a, err := s.audienceOf(auth.Tokens)
			if err != nil {
				c.Close(statusBadToken, err.Error())
				return
			}
			cl.audience.Store(a)
			// Said back, so the browser knows from when it is followed.
			s.hub.send(cl, map[string]any{"type": "auth", "customers": a.list(), "operator": a.operator})
		}
	}()
	ch := cl.ch
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				c.Close(websocket.StatusGoingAway, "shutting down")
				return
			}
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.Write(wctx, websocket.MessageText, msg)
			cancel()
			if err != nil {
				return
			}
		}
	}
}

// statusBadToken closes a websocket whose token is refused (4000-4999
// are the application's; 4401 reads as HTTP's 401).
const statusBadToken websocket.StatusCode = 4401

// everyone is the owner of a message any browser may have (the counters).
const everyone = "\x00everyone"

// maxWSTokens bounds the tokens one websocket may bring.
const maxWSTokens = 32

// client is one browser: its messages, and who it said it is (nil: nobody,
// it gets only what names no one).
type client struct {
	ch       chan []byte
	audience atomic.Pointer[audience]
}

// gets reports whether the client may have a message about owner's data.
func (c *client) gets(owner string) bool {
	if owner == everyone {
		return true
	}
	a := c.audience.Load()
	return a != nil && (a.operator || owner != "" && a.customers[owner])
}

// hub fans messages out to the browsers; a browser that falls behind
// loses messages rather than slowing the others.
type hub struct {
	mu      sync.Mutex
	clients map[*client]bool
	closed  bool
}

func newHub() *hub { return &hub{clients: map[*client]bool{}} }

func (h *hub) join() *client {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := &client{ch: make(chan []byte, 256)}
	if h.closed {
		close(c.ch)
		return c
	}
	h.clients[c] = true
	return c
}

func (h *hub) leave(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients[c] {
		delete(h.clients, c)
		close(c.ch)
	}
}

// send sends v to one client, if it is still there.
func (h *hub) send(c *client, v any) {
	msg, err := json.Marshal(v)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients[c] {
		select {
		case c.ch <- msg:
		default:
		}
	}
}

func (h *hub) active() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients) > 0
}

// broadcast sends v to the browsers that may have owner's data (the
// customer's id, or everyone).
func (h *hub) broadcast(owner string, v any) {
	msg, err := json.Marshal(v)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if !c.gets(owner) {
			continue
		}
		select {
		case c.ch <- msg:
		default:
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.clients {
		delete(h.clients, c)
		close(c.ch)
	}
}
