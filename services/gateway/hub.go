package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
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
	s.hub.broadcast(map[string]any{"type": "order", "order": v})
}

func (s *Service) pushStats() {
	if s.hub.active() {
		s.hub.broadcast(map[string]any{"type": "stats", "stats": s.rm.Load().Stats()})
	}
}

// ws upgrades to a websocket and pushes every order change until the
// browser goes.
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
	ch := s.hub.join()
	defer s.hub.leave(ch)
	ctx := c.CloseRead(r.Context())
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

// hub fans messages out to the browsers; a browser that falls behind
// loses messages rather than slowing the others.
type hub struct {
	mu      sync.Mutex
	clients map[chan []byte]bool
	closed  bool
}

func newHub() *hub { return &hub{clients: map[chan []byte]bool{}} }

func (h *hub) join() chan []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan []byte, 256)
	if h.closed {
		close(ch)
		return ch
	}
	h.clients[ch] = true
	return ch
}

func (h *hub) leave(ch chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients[ch] {
		delete(h.clients, ch)
		close(ch)
	}
}

func (h *hub) active() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients) > 0
}

func (h *hub) broadcast(v any) {
	msg, err := json.Marshal(v)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.clients {
		select {
		case ch <- msg:
		default:
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.clients {
		delete(h.clients, ch)
		close(ch)
	}
}
