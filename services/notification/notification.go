// Package notification e-mails customers: a welcome, a receipt for each
// payment, and the outcome of each order. E-mails are written as .eml
// files to a directory, one per event (a receipt per payment id), so a
// redelivered event sends nothing twice. It keeps its own copy of
// customers' names and addresses, from CustomerRegistered events, and of
// whose each order is, from OrderPlaced events.
package notification

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
)

// From is the shop's address.
const From = "Choreo Shop <shop@choreo.example>"

// Service is the notification service.
type Service struct {
	d     kit.Deps
	dir   string
	store *kit.Store
}

// New returns the service, writing e-mails to dir; Run starts it.
func New(d kit.Deps, dir string) *Service { return &Service{d: d, dir: dir} }

// Run sends e-mails until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	// The e-mails hold customers' names and addresses: the directory is
	// the owner's alone (0700), tightened if it exists with a wider mode.
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("mail directory: %w", err)
	}
	if err := os.Chmod(s.dir, 0o700); err != nil {
		return fmt.Errorf("mail directory: %w", err)
	}
	var err error
	if s.store, err = kit.OpenStore(ctx, s.d.JS, "notification"); err != nil {
		return err
	}
	router, err := s.d.Bus.NewRouter()
	if err != nil {
		return err
	}
	err = errors.Join(
		kit.On(router, s.d.Bus, "notification", schemas.TopicCustomerRegistered, s.welcome),
		kit.On(router, s.d.Bus, "notification", schemas.TopicOrderPlaced, s.placed),
		kit.On(router, s.d.Bus, "notification", schemas.TopicPaymentSucceeded, s.receipt),
		kit.On(router, s.d.Bus, "notification", schemas.TopicOrderConfirmed, s.confirmed),
		kit.On(router, s.d.Bus, "notification", schemas.TopicOrderRejected, s.rejected),
	)
	if err != nil {
		return err
	}
	return kit.RunRouter(ctx, router)
}

func (s *Service) welcome(ctx context.Context, c schemas.CustomerRegistered) error {
	if err := s.store.Put(ctx, c.CustomerID, c); err != nil {
		return err
	}
	return s.send("welcome-"+c.CustomerID, c, "Welcome to the Choreo Shop",
		fmt.Sprintf("Hello %s,\n\nyour account is ready. Deliveries go to:\n%s\n%s %s\n%s\n", c.Name, c.Address.Line1, c.Address.Postcode, c.Address.City, c.Address.Country), c.RegisteredAt)
}

func (s *Service) customer(ctx context.Context, id string) (schemas.CustomerRegistered, error) {
	var c schemas.CustomerRegistered
	if err := s.store.Get(ctx, id, &c); err != nil {
		return c, fmt.Errorf("customer %s not known yet: %w", id, err) // retried
	}
	return c, nil
}

// OrderOwner is the service's copy of whose an order is, kept under the
// order's id (customers are kept under theirs: the prefixes differ).
type OrderOwner struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
}

func (s *Service) placed(ctx context.Context, o schemas.OrderPlaced) error {
	return s.store.Put(ctx, o.OrderID, OrderOwner{OrderID: o.OrderID, CustomerID: o.CustomerID})
}

// receipt e-mails the customer a receipt for a payment, once per payment
// id however often the event comes. The event names the customer; one of
// an earlier version does not, and its order's OrderPlaced tells.
func (s *Service) receipt(ctx context.Context, p schemas.PaymentSucceeded) error {
	o := OrderOwner{OrderID: p.OrderID, CustomerID: p.CustomerID}
	if o.CustomerID == "" {
		if err := s.store.Get(ctx, p.OrderID, &o); err != nil {
			return fmt.Errorf("order %s not known yet: %w", p.OrderID, err) // retried: its OrderPlaced is on its way
		}
	}
	c, err := s.customer(ctx, o.CustomerID)
	if err != nil {
		return err
	}
	return s.send("receipt-"+p.PaymentID, c, "Receipt for your order "+p.OrderID,
		fmt.Sprintf("Hello %s,\n\nwe received your payment for order %s.\n\nPayment:  %s\nAmount:   %s\nDate:     %s\n",
			c.Name, p.OrderID, p.PaymentID, Amount(p.Amount, p.Currency), p.Time.UTC().Format(time.RFC1123)), p.Time)
}

func (s *Service) confirmed(ctx context.Context, o schemas.OrderConfirmed) error {
	c, err := s.customer(ctx, o.CustomerID)
	if err != nil {
		return err
	}
	return s.send("confirmed-"+o.OrderID, c, "Your order "+o.OrderID+" is confirmed",
		fmt.Sprintf("Hello %s,\n\nyour order %s of %s is confirmed and on its way.\n", c.Name, o.OrderID, Amount(o.Total, o.Currency)), o.ConfirmedAt)
}

func (s *Service) rejected(ctx context.Context, o schemas.OrderRejected) error {
	c, err := s.customer(ctx, o.CustomerID)
	if err != nil {
		return err
	}
	return s.send("rejected-"+o.OrderID, c, "Your order "+o.OrderID+" could not go through",
		fmt.Sprintf("Hello %s,\n\nwe could not complete your order %s: %s.\nAnything charged has been refunded.\n", c.Name, o.OrderID, o.Reason), o.RejectedAt)
}

// Amount formats minor units.
func Amount(m schemas.Money, currency string) string {
	return fmt.Sprintf("%d.%02d %s", m/100, m%100, currency)
}

// Compose writes an e-mail from the shop to a customer. Every header is
// encoded by the standard library: the addresses by net/mail (a name
// that is not plain printable ASCII becomes an RFC 2047 encoded word) and
// the subject by mime.QEncoding, so no character of a name or subject can
// end a header and start another, or the body. An address net/mail cannot
// parse is an error. The body's line ends become CRLF.
func Compose(to schemas.CustomerRegistered, subject, body, messageID string, at time.Time) ([]byte, error) {
	addr, err := mail.ParseAddress(to.Email)
	if err != nil {
		return nil, fmt.Errorf("e-mail address %q: %v", to.Email, err)
	}
	from, err := mail.ParseAddress(From)
	if err != nil {
		return nil, err
	}
	rcpt := mail.Address{Name: to.Name, Address: addr.Address}
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@choreo.example>\r\n",
		from.String(), rcpt.String(), mime.QEncoding.Encode("utf-8", subject), at.Format(time.RFC1123Z), messageID)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\r", "\n")
	b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	return []byte(b.String()), nil
}

// send writes one e-mail, once: an existing file is left alone. An e-mail
// that cannot be written safely is dead-lettered, not retried.
func (s *Service) send(name string, to schemas.CustomerRegistered, subject, body string, at time.Time) error {
	path := filepath.Join(s.dir, name+".eml")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	msg, err := Compose(to, subject, body, name, at)
	if err != nil {
		return saga.Abort(fmt.Errorf("e-mail %s: %w", name, err))
	}
	tmp, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(msg); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
