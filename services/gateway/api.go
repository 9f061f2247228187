package gateway

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/choreo-go/choreo/saga"
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
