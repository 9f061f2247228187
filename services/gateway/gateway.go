// Package gateway is the shop's front door: the HTTP API, the web UI and
// its websocket push. It reads from its own read model, built from events,
// and from the sagas' state; it changes nothing itself but hands
// registrations and orders to the services that own them.
package gateway

import (
	"bytes"
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/jsutil"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/customer"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
)

//go:embed web
var webFiles embed.FS

// Service is the gateway.
type Service struct {
	d       kit.Deps
	addr    string
	rm      atomic.Pointer[ReadModel]
	hub     *hub
	ready   atomic.Bool
	addrCh  chan string
	rebuild sync.Mutex
	opts    options
	optErr  error
	wsConns atomic.Int64 // websockets open, at most opts.maxWebsockets
	health  *kit.Health
}

// New returns a gateway that will listen on addr; Run starts it, or
// returns ErrInvalidOption if an option is out of range.
func New(d kit.Deps, addr string, opts ...Option) *Service {
	s := &Service{d: d, addr: addr, hub: newHub(), addrCh: make(chan string, 1), opts: defaultOptions(),
		health: kit.NewHealth(d.JS, kit.Streams, kit.Buckets)}
	for _, o := range opts {
		if err := o(&s.opts); err != nil && s.optErr == nil {
			s.optErr = err
		}
	}
	s.rm.Store(NewReadModel())
	return s
}

// Addr returns the address the gateway listens on, once it does.
func (s *Service) Addr() <-chan string { return s.addrCh }

// Run projects events, follows the sagas and serves HTTP until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if s.optErr != nil {
		return s.optErr
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("http address %s: %w", s.addr, err)
	}
	s.addrCh <- ln.Addr().String()
	// A hijacked connection (the websocket) drops these deadlines: they
	// bound the upgrade request, not the socket's life.
	t := s.opts.timeouts
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read,
		WriteTimeout: t.Write, IdleTimeout: t.Idle}
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); errc <- s.project(ctx) }()
	go func() { defer wg.Done(); errc <- s.follow(ctx) }()
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.hub.close()
	_ = srv.Shutdown(sctx)
	wg.Wait()
	return runErr
}

// replay feeds rm every event from the stream's start, then keeps feeding
// it until ctx ends. caughtUp is called once it has read what was there.
func (s *Service) replay(ctx context.Context, rm *ReadModel, caughtUp func(), onChange func(*OrderRow)) error {
	cons, err := s.d.JS.OrderedConsumer(ctx, events.Stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	if info.NumPending == 0 && caughtUp != nil {
		caughtUp()
		caughtUp = nil
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); it.Stop(); jsutil.DropOrdered(s.d.JS, events.Stream, cons) }()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		topic := strings.TrimPrefix(m.Subject(), "events.")
		var verr error
		if typ, known := schemas.TypeOfTopic[topic]; known {
			verr = schemas.Validate(typ, m.Data())
		}
		if verr != nil {
			// The services' consumers dead-letter it; the view skips it.
			s.d.Logger.Warn("gateway: schema-invalid event skipped", "topic", topic, "err", verr)
		} else if row, err := rm.Apply(topic, m.Headers().Get("Nats-Msg-Id"), m.Data()); err != nil {
			s.d.Logger.Warn("gateway: unreadable event", "topic", topic, "err", err)
		} else if row != nil && onChange != nil {
			onChange(row)
		}
		if md, err := m.Metadata(); err == nil && md.NumPending == 0 && caughtUp != nil {
			caughtUp()
			caughtUp = nil
		}
	}
}

func (s *Service) project(ctx context.Context) error {
	return s.replay(ctx, s.rm.Load(), func() { s.ready.Store(true) }, func(row *OrderRow) {
		s.pushOrder(ctx, row.ID)
		s.pushStats()
	})
}

// Rebuild throws the read model away and replays the stream into a new
// one, which replaces it once it has caught up.
func (s *Service) Rebuild(ctx context.Context) error {
	s.rebuild.Lock()
	defer s.rebuild.Unlock()
	rm := NewReadModel()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- s.replay(rctx, rm, func() { close(done) }, nil) }()
	select {
	case <-done:
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	s.rm.Store(rm)
	return nil
}

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

// OrderView is an order as the API shows it.
type OrderView struct {
	OrderRow
	Saga *SagaView `json:"saga"`
	// Rev never decreases over an order's life: a client that receives
	// views out of order (a push overtaking a GET) keeps the highest.
	Rev int `json:"rev"`
}

// SagaView is an order's saga as the API shows it.
type SagaView struct {
	Version   int         `json:"version"` // the order flow version it runs on
	Status    saga.Status `json:"status"`
	Reason    string      `json:"reason,omitempty"`
	StartedAt time.Time   `json:"started_at"`
	EndedAt   *time.Time  `json:"ended_at,omitempty"`
	Steps     []StepView  `json:"steps"`
	TraceID   string      `json:"trace_id,omitempty"` // its OpenTelemetry trace, when traced
}

// StepView is a saga step as the API shows it.
type StepView struct {
	Name     string          `json:"name"`
	Service  string          `json:"service"` // the step's owner
	Position int             `json:"position"`
	Status   saga.StepStatus `json:"status"`
	// Activity, of a running step in the view of one order: "working"
	// once a runner of its service has taken it (its action is under
	// way), "waiting" while none has (the service is stopped, or busy with
	// the steps before it), with WaitingMS, how long since it was
	// triggered (StartedAt). From the saga's log and the broker, never
	// guessed: empty when the broker could not say.
	Activity             string     `json:"activity,omitempty"`
	WaitingMS            int64      `json:"waiting_ms,omitempty"`
	Attempts             int        `json:"attempts"`
	Error                string     `json:"error"`
	StartedAt            *time.Time `json:"started_at"`
	EndedAt              *time.Time `json:"ended_at"`
	CompensationAttempts int        `json:"compensation_attempts,omitempty"`
	CompensatedAt        *time.Time `json:"compensated_at,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// owners are the services that own the order flow's steps, of every
// version.
var owners = func() map[string]string {
	m := map[string]string{}
	for _, si := range append(schemas.OrderFlow.Steps(), schemas.OrderFlowV2.Steps()...) {
		m[si.Name] = si.Owner // versions agree on the steps they share
	}
	return m
}()

func sagaView(st *saga.State) *SagaView {
	v := &SagaView{Version: st.Version, Status: st.Status, Reason: st.Reason, StartedAt: st.StartedAt, EndedAt: timePtr(st.EndedAt), TraceID: st.TraceID}
	for _, ss := range st.Steps {
		v.Steps = append(v.Steps, StepView{Name: ss.Name, Service: owners[ss.Name], Position: ss.Position, Status: ss.Status, Attempts: ss.Attempts, Error: ss.Error,
			StartedAt: timePtr(ss.StartedAt), EndedAt: timePtr(ss.EndedAt), CompensationAttempts: ss.CompensationAttempts, CompensatedAt: timePtr(ss.CompensatedAt)})
	}
	return v
}

// orderView joins the read model's order with its saga.
func (s *Service) orderView(ctx context.Context, id string) (OrderView, bool) {
	row, ok := s.rm.Load().Order(id)
	st, err := s.d.Sagas.Get(ctx, schemas.OrderFlow, id)
	if !ok && err != nil {
		return OrderView{}, false
	}
	if !ok {
		row = OrderRow{ID: id, Status: "pending"}
	}
	v := OrderView{OrderRow: row}
	if err == nil {
		v.Saga = sagaView(st)
		v.Rev = 2 * st.Events
		s.activity(st, v.Saga)
	}
	if row.Status != "pending" { // an order settles once, after its saga ends
		v.Rev++
	}
	return v, true
}

// activity tells the running steps of a saga that a service is working on
// from those that wait for one (StepView.Activity), as Get found them.
func (s *Service) activity(st *saga.State, v *SagaView) {
	now := time.Now()
	for i, ss := range st.Steps {
		if ss.Status != saga.StepRunning {
			continue
		}
		sv := &v.Steps[i]
		switch {
		case ss.Taken:
			sv.Activity = "working"
		case ss.Unserved || ss.Waiting != "":
			sv.Activity, sv.WaitingMS = "waiting", max(0, now.Sub(ss.StartedAt).Milliseconds())
		}
	}
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

// Handler is the gateway's HTTP API and UI.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/customers", s.postCustomer)
	mux.HandleFunc("GET /api/customers", s.getCustomers)
	mux.HandleFunc("POST /api/orders", s.postOrder)
	mux.HandleFunc("GET /api/orders", s.getOrders)
	mux.HandleFunc("GET /api/orders/{id}", s.getOrder)
	mux.HandleFunc("GET /api/catalog", s.getCatalog)
	mux.HandleFunc("GET /api/stats", s.getStats)
	mux.HandleFunc("GET /api/flow", s.getFlow)
	mux.HandleFunc("GET /ws", s.ws)
	mux.HandleFunc("GET /healthz", s.healthz)
	web, _ := fs.Sub(webFiles, "web")
	mux.Handle("GET /", http.FileServerFS(web))
	mux.HandleFunc("GET /api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return s.front(mux)
}

// healthz is 200 when the broker is reachable, every stream and bucket
// the shop needs exists and the read model has caught up; 503 with the
// reason otherwise.
func (s *Service) healthz(w http.ResponseWriter, r *http.Request) {
	if err := s.health.Check(r.Context()); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
		return
	}
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting", "reason": "the read model is catching up"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// decode reads a JSON body strictly: one object, no unknown fields, valid
// UTF-8 (encoding/json would quietly replace bad bytes), 64 KiB at most.
// A body still arriving after the server's read timeout gets a 408.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "the body is over 64 KiB")
		return false
	case errors.As(err, &netErr) && netErr.Timeout():
		writeError(w, http.StatusRequestTimeout, "the body came too slowly")
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return false
	case !utf8.Valid(body):
		writeError(w, http.StatusBadRequest, "the body is not valid UTF-8")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad JSON: one object expected")
		return false
	}
	return true
}

// callError answers a failed call to a service.
func callError(w http.ResponseWriter, err error) {
	var bad kit.BadRequest
	var unavailable kit.Unavailable
	var conflict kit.Conflict
	switch {
	case errors.As(err, &bad):
		writeError(w, http.StatusBadRequest, bad.Msg)
	case errors.As(err, &conflict):
		// As draft-ietf-httpapi-idempotency-key-header answers a key
		// reused with another request.
		writeError(w, http.StatusUnprocessableEntity, conflict.Msg)
	case errors.As(err, &unavailable):
		writeError(w, http.StatusServiceUnavailable, unavailable.Msg)
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "no responders"):
		writeError(w, http.StatusServiceUnavailable, "the service is unavailable, try again: "+err.Error())
	default:
		writeError(w, http.StatusBadGateway, err.Error())
	}
}

func (s *Service) postCustomer(w http.ResponseWriter, r *http.Request) {
	var req customer.RegisterRequest
	if !decode(w, r, &req) {
		return
	}
	// The customer service checks it too (and everything else about it).
	if err := customer.CheckText(req); err != nil {
		callError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	res, err := kit.Call[customer.RegisterRequest, customer.RegisterResult](ctx, s.d.NC, customer.RegisterSubject, req)
	if err != nil {
		callError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"id": res.ID})
}

func (s *Service) getCustomers(w http.ResponseWriter, r *http.Request) {
	type row struct {
		ID      string          `json:"id"`
		Name    string          `json:"name"`
		Email   string          `json:"email"`
		Address schemas.Address `json:"address"`
	}
	out := []row{}
	for _, c := range s.rm.Load().Customers() {
		out = append(out, row{ID: c.CustomerID, Name: c.Name, Email: c.Email, Address: c.Address})
	}
	writeJSON(w, http.StatusOK, map[string]any{"customers": out})
}

// orderRequest is an order as a client posts it, with the card's number.
type orderRequest struct {
	CustomerID string       `json:"customer_id"`
	Items      []order.Line `json:"items"`
	Card       string       `json:"card"`
}

func (s *Service) postOrder(w http.ResponseWriter, r *http.Request) {
	// An Idempotency-Key names the order: sent again with the same key
	// (after a lost response, a timeout), the request answers the order
	// the first one placed. Without one the gateway makes its own, for its
	// own retries.
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		key = kit.NewID("gw")
	} else if err := order.CheckKey(key); err != nil {
		writeError(w, http.StatusBadRequest, "Idempotency-Key: "+err.Error())
		return
	}
	var req orderRequest
	if !decode(w, r, &req) {
		return
	}
	if req.CustomerID == "" {
		writeError(w, http.StatusBadRequest, "customer_id is required")
		return
	}
	if _, ok := s.rm.Load().Customer(req.CustomerID); !ok {
		writeError(w, http.StatusUnprocessableEntity, "unknown customer "+req.CustomerID)
		return
	}
	if len(req.Items) == 0 {
		// Before the card is tokenized: no token for an order that is none.
		writeError(w, http.StatusBadRequest, "an order needs at least one item")
		return
	}
	// The card's number goes no further than the payment service, which
	// keeps what it needs to charge the card under a token (and says why
	// a number is malformed); the order and its saga carry the token. No
	// token, no order: when payment is down nothing is started.
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	card, err := kit.Call[payment.TokenizeRequest, schemas.Card](ctx, s.d.NC, payment.TokenizeSubject, payment.TokenizeRequest{CustomerID: req.CustomerID, Number: req.Card})
	if err != nil {
		callError(w, fmt.Errorf("payment: %w", err))
		return
	}
	// The order service checks the rest (items) and says why.
	res, err := s.place(r.Context(), order.PlaceRequest{CustomerID: req.CustomerID, Items: req.Items, Card: card, Key: key})
	if err != nil {
		callError(w, err)
		return
	}
	s.rm.Load().Pending(OrderRow{ID: res.ID, CustomerID: req.CustomerID, Status: "pending", Total: res.Total, Currency: schemas.Currency,
		PlacedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()})
	answer := map[string]string{"id": res.ID, "status": "pending"}
	if res.Replayed {
		// A repeat: the order service's word on the order as it is now.
		w.Header().Set("Idempotent-Replayed", "true")
		if res.Status != "" {
			answer["status"] = res.Status
		}
		if res.Reason != "" {
			answer["reason"] = res.Reason
		}
	}
	writeJSON(w, http.StatusAccepted, answer)
}

// place asks the order service to place an order, and asks again when a
// request goes unanswered: a reply can be lost (the order service's
// connection moved to another server of the cluster as it answered)
// after the order was placed. The request's idempotency key makes a
// repeat find that order rather than place a second one.
func (s *Service) place(ctx context.Context, req order.PlaceRequest) (order.PlaceResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, s.opts.timeouts.Place)
		res, err := kit.Call[order.PlaceRequest, order.PlaceResult](actx, s.d.NC, order.PlaceSubject, req)
		acancel()
		// Unanswered is a timeout; "no responders" is a request nobody
		// received (no order service runs): said at once.
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return res, err
		}
		s.d.Logger.Warn("gateway: an order placement went unanswered; asking again with its idempotency key", "customer", req.CustomerID, "err", err)
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Pages of GET /api/orders: limit's default and most.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// getOrders answers a page of orders, newest first, with each one's saga.
// A page after the first starts at the cursor the previous one named in
// "next"; the last page has no "next". The cursor is a place in the
// listing, not an offset: orders placed during a walk go before its
// start and neither shift nor repeat what follows. (An order placed a
// moment ago moves once, when its event replaces the gateway's
// provisional placed time.)
func (s *Service) getOrders(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := DefaultPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want 1 to %d", v, MaxPageSize))
			return
		}
		limit = n
	}
	var after *OrderKey
	if v := q.Get("cursor"); v != "" {
		k, err := parseCursor(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "malformed cursor: take it from the last page's \"next\"")
			return
		}
		after = &k
	}
	rows, more := s.rm.Load().OrdersPage(q.Get("customer_id"), after, limit)
	out := make([]OrderView, 0, len(rows))
	for _, row := range rows {
		v := OrderView{OrderRow: row}
		if st, err := s.d.Sagas.Get(r.Context(), schemas.OrderFlow, row.ID); err == nil {
			v.Saga = sagaView(st)
		}
		out = append(out, v)
	}
	res := map[string]any{"orders": out}
	if more {
		last := rows[len(rows)-1]
		res["next"] = formatCursor(OrderKey{PlacedAt: last.PlacedAt, ID: last.ID})
	}
	writeJSON(w, http.StatusOK, res)
}

// formatCursor writes a key as an opaque, URL-safe cursor.
func formatCursor(k OrderKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(k.PlacedAt.UTC().Format(time.RFC3339Nano) + " " + k.ID))
}

func parseCursor(c string) (OrderKey, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return OrderKey{}, err
	}
	ts, id, ok := strings.Cut(string(raw), " ")
	if !ok || !saga.ValidID(id) {
		return OrderKey{}, errors.New("no order id")
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	return OrderKey{PlacedAt: at, ID: id}, err
}

func (s *Service) getOrder(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !saga.ValidID(id) {
		writeError(w, http.StatusBadRequest, "malformed order id")
		return
	}
	v, ok := s.orderView(r.Context(), id)
	if !ok {
		writeError(w, http.StatusNotFound, "no order "+id)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// CatalogItem is a product with its stock, as the gateway shows it. Stock
// is nil until the gateway has heard of the inventory's stock.
type CatalogItem struct {
	SKU   string        `json:"sku"`
	Name  string        `json:"name"`
	Price schemas.Money `json:"price"`
	Stock *int          `json:"stock"`
}

// getCatalog answers from the read model: the products of the contract
// with the stock of the newest StockChanged. It asks no service, so it
// answers while inventory is down (with the stock as inventory last
// announced it, and when: stock_as_of).
func (s *Service) getCatalog(w http.ResponseWriter, r *http.Request) {
	st := s.rm.Load().Stock()
	items := make([]CatalogItem, 0, len(schemas.Products))
	for _, p := range schemas.Products {
		it := CatalogItem{SKU: p.SKU, Name: p.Name, Price: p.Price}
		if n, ok := st.Levels[p.SKU]; ok {
			it.Stock = &n
		}
		items = append(items, it)
	}
	res := map[string]any{"items": items, "stock_version": st.Version}
	if !st.At.IsZero() {
		res["stock_as_of"] = st.At
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Service) getStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.rm.Load().Stats())
}

func (s *Service) getFlow(w http.ResponseWriter, r *http.Request) {
	// Everything comes from the flow's definition: the steps' owners and
	// compensations are declared there (saga.Owner, saga.Undo).
	type step struct {
		Name, Service, Compensation string
		Pivot                       bool
	}
	// The newest version by default; ?version=N draws another (an order
	// ends on the version it started with).
	flow := schemas.OrderFlowV2
	if v := r.URL.Query().Get("version"); v != "" {
		switch v {
		case "1":
			flow = schemas.OrderFlow
		case "2":
		default:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("version %q: the order flow has versions 1 and 2", v))
			return
		}
	}
	var out [][]step
	for _, si := range flow.Steps() {
		for len(out) <= si.Position {
			out = append(out, nil)
		}
		out[si.Position] = append(out[si.Position], step{Name: si.Name, Service: si.Owner, Compensation: si.Undo, Pivot: si.Kind == saga.PivotStep})
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": flow.Name(), "version": flow.Version(), "positions": out})
}

// ws upgrades to a websocket and pushes every order change until the
// browser goes.
func (s *Service) ws(w http.ResponseWriter, r *http.Request) {
	if n := s.wsConns.Add(1); n > int64(s.opts.maxWebsockets) {
		s.wsConns.Add(-1)
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many live connections (%d), try again later", s.opts.maxWebsockets))
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
