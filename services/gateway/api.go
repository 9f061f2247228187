package gateway

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/choreo-go/choreo/internal/httpjson"
	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/customer"
	"github.com/choreo-go/choreo/services/kit"
)

//go:embed web
var webFiles embed.FS

// Handler is the gateway's HTTP API and UI.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/customers", s.postCustomer)
	mux.HandleFunc("GET /api/customers", s.getCustomers)
	mux.HandleFunc("GET /api/customers/{id}", s.getCustomer)
	mux.HandleFunc("POST /api/orders", s.postOrder)
	mux.HandleFunc("GET /api/orders", s.getOrders)
	mux.HandleFunc("GET /api/orders/{id}", s.getOrder)
	mux.HandleFunc("POST /api/orders/{id}/confirm-payment", s.confirmPayment)
	mux.HandleFunc("GET /api/catalog", s.getCatalog)
	mux.HandleFunc("GET /api/stats", s.getStats)
	mux.HandleFunc("GET /api/flow", s.getFlow)
	mux.HandleFunc("GET /ws", s.ws)
	mux.HandleFunc("GET /healthz", s.healthz)
	web, _ := fs.Sub(webFiles, "web")
	mux.Handle("GET /", http.FileServerFS(web))
	mux.HandleFunc("GET /api/", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Error(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return s.front(mux)
}

// healthz is 200 when the broker is reachable, every stream and bucket
// the shop needs exists and the read model has caught up; 503 with the
// reason otherwise.
func (s *Service) healthz(w http.ResponseWriter, r *http.Request) {
	if err := s.health.Check(r.Context()); err != nil {
		httpjson.Write(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
		return
	}
	if !s.ready.Load() {
		httpjson.Write(w, http.StatusServiceUnavailable, map[string]string{"status": "starting", "reason": "the read model is catching up"})
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
}

// callError answers a failed call to a service.
func callError(w http.ResponseWriter, err error) {
	var bad kit.BadRequest
	var unavailable kit.Unavailable
	var conflict kit.Conflict
	switch {
	case errors.As(err, &bad):
		httpjson.Error(w, http.StatusBadRequest, bad.Msg)
	case errors.As(err, &conflict):
		// As draft-ietf-httpapi-idempotency-key-header answers a key
		// reused with another request.
		httpjson.Error(w, http.StatusUnprocessableEntity, conflict.Msg)
	case errors.As(err, &unavailable):
		httpjson.Error(w, http.StatusServiceUnavailable, unavailable.Msg)
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "no responders"):
		httpjson.Error(w, http.StatusServiceUnavailable, "the service is unavailable, try again: "+err.Error())
	default:
		httpjson.Error(w, http.StatusBadGateway, err.Error())
	}
}

func (s *Service) postCustomer(w http.ResponseWriter, r *http.Request) {
	var req customer.RegisterRequest
	if !httpjson.Decode(w, r, &req) {
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
	// The customer's token: what every later request for this customer
	// brings. The gateway keeps no copy (see auth.go).
	token, exp := s.issueToken(res.ID, time.Now())
	httpjson.Write(w, http.StatusCreated, map[string]any{"id": res.ID, "token": token, "token_expires_at": exp.UTC()})
}

// CustomerView is a customer's profile as the API shows it.
type CustomerView struct {
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	Email   string          `json:"email"`
	Address schemas.Address `json:"address"`
}

// getCustomers lists every customer: the operator's only.
func (s *Service) getCustomers(w http.ResponseWriter, r *http.Request) {
	if !s.operator(w, r, "the list of every customer") {
		return
	}
	out := []CustomerView{}
	for _, c := range s.rm.Load().Customers() {
		out = append(out, CustomerView{ID: c.CustomerID, Name: c.Name, Email: c.Email, Address: c.Address})
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"customers": out})
}

// getCustomer is one customer's profile, for that customer's token (or
// the operator's). 404 until the gateway has heard of the customer (it
// learns customers from their events, a moment after registering them).
func (s *Service) getCustomer(w http.ResponseWriter, r *http.Request) {
	v, ok := s.who(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !v.may(id) {
		forbidden(w, v, id)
		return
	}
	c, ok := s.rm.Load().Customer(id)
	if !ok {
		httpjson.Error(w, http.StatusNotFound, "no customer "+id+" yet")
		return
	}
	httpjson.Write(w, http.StatusOK, CustomerView{ID: c.CustomerID, Name: c.Name, Email: c.Email, Address: c.Address})
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
	httpjson.Write(w, http.StatusOK, res)
}

func (s *Service) getStats(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, s.rm.Load().Stats())
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
	flow := schemas.OrderFlowV4
	if v := r.URL.Query().Get("version"); v != "" {
		switch v {
		case "1":
			flow = schemas.OrderFlow
		case "2":
			flow = schemas.OrderFlowV2
		case "3":
			flow = schemas.OrderFlowV3
		case "4":
		default:
			httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("version %q: the order flow has versions 1, 2, 3 and 4", v))
			return
		}
	}
	var out [][]step
	for _, si := range flow.Describe().Steps {
		for len(out) <= si.Position {
			out = append(out, nil)
		}
		out[si.Position] = append(out[si.Position], step{Name: si.Name, Service: si.Owner, Compensation: si.Undo, Pivot: si.Kind == describe.Pivot})
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"name": flow.Name(), "version": flow.Version(), "positions": out})
}
