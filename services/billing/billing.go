// Package billing issues invoices for orders: the invoice step of the
// order saga, compensated by voiding the invoice.
package billing

import (
	"context"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
)

// Invoice is one of the service's invoices.
type Invoice struct {
	ID       string        `json:"id"`
	OrderID  string        `json:"order_id"`
	Amount   schemas.Money `json:"amount"`
	Currency string        `json:"currency"`
	Status   string        `json:"status"` // issued or void
	Issued   int           `json:"issued"`
	Voided   int           `json:"voided"`
	IssuedAt time.Time     `json:"issued_at"`
}

// Service is the billing service.
type Service struct {
	d     kit.Deps
	store *kit.Store
}

// New returns the service; Run starts it.
func New(d kit.Deps) *Service { return &Service{d: d} }

// Run issues and voids invoices until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var err error
	if s.store, err = kit.OpenStore(ctx, s.d.JS, "billing"); err != nil {
		return err
	}
	r, err := s.d.Runner()
	if err != nil {
		return err
	}
	if err := saga.Handle(r, schemas.Invoice, s.issue, s.void); err != nil {
		return err
	}
	if err := saga.Handle(r, schemas.Bill, s.bill, nil); err != nil {
		return err
	}
	return r.Run(ctx)
}

func (s *Service) issue(ctx context.Context, p schemas.PaymentSucceeded) (schemas.InvoiceIssued, error) {
	id := "inv-" + p.OrderID
	inv, err := kit.Update(ctx, s.store, id, func(inv *Invoice) (bool, error) {
		if inv.Status == "void" && inv.Issued == 0 {
			return false, saga.Abortf("order %s was cancelled before it was invoiced", p.OrderID)
		}
		if inv.ID != "" {
			return false, nil
		}
		*inv = Invoice{ID: id, OrderID: p.OrderID, Amount: p.Amount, Currency: p.Currency, Status: "issued", Issued: 1, IssuedAt: time.Now().UTC()}
		return true, nil
	})
	if err != nil {
		return schemas.InvoiceIssued{}, err
	}
	return schemas.InvoiceIssued{InvoiceID: id, OrderID: p.OrderID, Amount: inv.Amount, Currency: inv.Currency, IssuedAt: inv.IssuedAt}, nil
}

// bill invoices a confirmed order (flow version 2), the same invoice the
// issue of version 1 would: one per order, whichever version made it.
func (s *Service) bill(ctx context.Context, c schemas.OrderConfirmed) (schemas.InvoiceIssued, error) {
	id := "inv-" + c.OrderID
	inv, err := kit.Update(ctx, s.store, id, func(inv *Invoice) (bool, error) {
		if inv.ID != "" {
			return false, nil
		}
		*inv = Invoice{ID: id, OrderID: c.OrderID, Amount: c.Total, Currency: c.Currency, Status: "issued", Issued: 1, IssuedAt: time.Now().UTC()}
		return true, nil
	})
	if err != nil {
		return schemas.InvoiceIssued{}, err
	}
	return schemas.InvoiceIssued{InvoiceID: id, OrderID: c.OrderID, Amount: inv.Amount, Currency: inv.Currency, IssuedAt: inv.IssuedAt}, nil
}

// void undoes an invoice, from the order alone; with none it records a
// void one so that a late issue is refused.
func (s *Service) void(ctx context.Context, p schemas.PaymentSucceeded, _ schemas.InvoiceIssued) error {
	id := "inv-" + p.OrderID
	_, err := kit.Update(ctx, s.store, id, func(inv *Invoice) (bool, error) {
		if inv.ID == "" {
			*inv = Invoice{ID: id, OrderID: p.OrderID, Status: "void"}
			return true, nil
		}
		if inv.Status != "issued" {
			return false, nil
		}
		inv.Status, inv.Voided = "void", inv.Voided+1
		return true, nil
	})
	return err
}

// Invoices returns every invoice, for checkers and operators.
func Invoices(ctx context.Context, d kit.Deps) ([]Invoice, error) {
	return kit.All[Invoice](ctx, d.JS, "billing")
}
