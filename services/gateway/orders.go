package gateway

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/choreo-go/choreo/internal/httpjson"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
)

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
	v, ok := s.who(w, r)
	if !ok {
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		key = kit.NewID("gw")
	} else if err := order.CheckKey(key); err != nil {
		httpjson.Error(w, http.StatusBadRequest, "Idempotency-Key: "+err.Error())
		return
	}
	var req orderRequest
	if !httpjson.Decode(w, r, &req) {
		return
	}
	if req.CustomerID == "" {
		req.CustomerID = v.customer // the token's customer
	}
	if req.CustomerID == "" {
		httpjson.Error(w, http.StatusBadRequest, "customer_id is required")
		return
	}
	if v.customer != req.CustomerID {
		// The operator too: an order is placed by its customer.
		if v.operator {
			httpjson.Error(w, http.StatusForbidden, "an order is placed with its customer's token, not the operator's")
			return
		}
		forbidden(w, v, req.CustomerID)
		return
	}
	if _, ok := s.rm.Load().Customer(req.CustomerID); !ok {
		httpjson.Error(w, http.StatusUnprocessableEntity, "unknown customer "+req.CustomerID)
		return
	}
	if len(req.Items) == 0 {
		// Before the card is tokenized: no token for an order that is none.
		httpjson.Error(w, http.StatusBadRequest, "an order needs at least one item")
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
	httpjson.Write(w, http.StatusAccepted, answer)
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
//
// A customer's token lists that customer's orders (customer_id may be
// left out); everyone's, or another customer's, are the operator's.
func (s *Service) getOrders(w http.ResponseWriter, r *http.Request) {
	v, ok := s.who(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	customer := q.Get("customer_id")
	if !v.operator {
		if customer == "" {
			customer = v.customer
		}
		if customer != v.customer {
			forbidden(w, v, customer)
			return
		}
	}
	limit := DefaultPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want 1 to %d", v, MaxPageSize))
			return
		}
		limit = n
	}
	var after *OrderKey
	if v := q.Get("cursor"); v != "" {
		k, err := parseCursor(v)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, "malformed cursor: take it from the last page's \"next\"")
			return
		}
		after = &k
	}
	rows, more := s.rm.Load().OrdersPage(customer, after, limit)
	out := make([]OrderView, 0, len(rows))
	for _, row := range rows {
		ov := OrderView{OrderRow: row}
		if st, err := s.d.Sagas.Get(r.Context(), schemas.OrderFlow, row.ID); err == nil {
			ov.Saga = s.sagaView(st)
		}
		out = append(out, ov)
	}
	res := map[string]any{"orders": out}
	if more {
		last := rows[len(rows)-1]
		res["next"] = formatCursor(OrderKey{PlacedAt: last.PlacedAt, ID: last.ID})
	}
	httpjson.Write(w, http.StatusOK, res)
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

// whoAndOrder reads who asks (401 when no token says) and the order id of
// the path (400 when it is not one).
func (s *Service) whoAndOrder(w http.ResponseWriter, r *http.Request) (viewer, string, bool) {
	v, ok := s.who(w, r)
	if !ok {
		return v, "", false
	}
	id := r.PathValue("id")
	if !saga.ValidID(id) {
		httpjson.Error(w, http.StatusBadRequest, "malformed order id")
		return v, "", false
	}
	return v, id, true
}

// getOrder answers an order to its customer's token (or the operator's).
// An order whose customer the gateway does not know yet (its event not
// read) is the operator's only: 404 to a customer, as if not placed yet.
func (s *Service) getOrder(w http.ResponseWriter, r *http.Request) {
	v, id, ok := s.whoAndOrder(w, r)
	if !ok {
		return
	}
	ov, ok := s.orderView(r.Context(), id)
	if !ok || !v.operator && ov.CustomerID == "" {
		httpjson.Error(w, http.StatusNotFound, "no order "+id)
		return
	}
	if !v.may(ov.CustomerID) {
		// Says nothing of whose it is.
		httpjson.Error(w, http.StatusForbidden, fmt.Sprintf("order %s is not customer %s's: this token reads only its own customer's orders", id, v.customer))
		return
	}
	httpjson.Write(w, http.StatusOK, ov)
}

// confirmPayment hands a customer's confirmation of an order's payment
// (the page's "confirm payment") to the payment service, which charges
// the card and completes the order's waiting charge step. Only the
// order's customer confirms it: another customer's token, or the
// operator's, is 403. An order that waits for no confirmation (a small
// one, one confirmed or over) is 409.
func (s *Service) confirmPayment(w http.ResponseWriter, r *http.Request) {
	v, id, ok := s.whoAndOrder(w, r)
	if !ok {
		return
	}
	row, ok := s.rm.Load().Order(id)
	if !ok || row.CustomerID == "" {
		httpjson.Error(w, http.StatusNotFound, "no order "+id)
		return
	}
	if v.customer == "" || v.customer != row.CustomerID {
		if v.operator {
			httpjson.Error(w, http.StatusForbidden, "a payment is confirmed with its customer's token, not the operator's")
			return
		}
		httpjson.Error(w, http.StatusForbidden, fmt.Sprintf("order %s is not customer %s's: a customer confirms only its own payments", id, v.customer))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	res, err := kit.Call[payment.ConfirmRequest, payment.Confirmation](ctx, s.d.NC, payment.ConfirmSubject, payment.ConfirmRequest{OrderID: id, CustomerID: row.CustomerID})
	var conflict kit.Conflict
	if errors.As(err, &conflict) {
		httpjson.Error(w, http.StatusConflict, conflict.Msg)
		return
	}
	if err != nil {
		callError(w, fmt.Errorf("payment: %w", err))
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"id": res.OrderID, "status": res.Status, "payment_id": res.PaymentID})
}
