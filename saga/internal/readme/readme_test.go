package readme_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/events"
	"github.com/choreo-go/choreo/saga/internal/readme"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// The README's first Go block is readme.go between its markers, so it
// compiles; and a newcomer's first test (the README's second Go block) is
// this file's TestSoldOutOrderIsRefunded.
func TestREADMEShowsThisCode(t *testing.T) {
	md, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("readme.go")
	if err != nil {
		t.Fatal(err)
	}
	blocks := goBlocks(string(md))
	if len(blocks) < 2 {
		t.Fatalf("README has %d Go blocks, want the code and the first test", len(blocks))
	}
	_, code, _ := strings.Cut(string(src), "// README begin\n")
	code, _, _ = strings.Cut(code, "// README end\n")
	if blocks[0] != strings.TrimSpace(code) {
		t.Errorf("README's first Go block is not readme.go between the markers:\n--- README\n%s\n--- readme.go\n%s", blocks[0], code)
	}
	test, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, first, _ := strings.Cut(string(test), "// first test begin\n")
	first, _, _ = strings.Cut(first, "// first test end\n")
	if blocks[1] != strings.TrimSpace(first) {
		t.Errorf("README's second Go block is not the first test:\n--- README\n%s\n--- readme_test.go\n%s", blocks[1], first)
	}
	_, waits, _ := strings.Cut(string(src), "// README waits begin\n")
	waits, _, _ = strings.Cut(waits, "// README waits end\n")
	if len(blocks) < 3 || blocks[2] != strings.TrimSpace(waits) {
		t.Errorf("README's third Go block is not readme.go between the waits markers:\n%s", waits)
	}
}

func goBlocks(md string) []string {
	var out []string
	for {
		_, rest, ok := strings.Cut(md, "```go\n")
		if !ok {
			return out
		}
		block, after, _ := strings.Cut(rest, "```")
		out = append(out, strings.TrimSpace(block))
		md = after
	}
}

type fakePayments struct {
	mu       sync.Mutex
	charged  map[string]int // idempotency key -> charges
	refunded []string
}

func (p *fakePayments) Charge(_ context.Context, key, cardToken string, total int) (readme.PaymentCharged, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cardToken == "tok_declined" {
		return readme.PaymentCharged{}, saga.Abortf("card declined")
	}
	p.charged[key]++
	return readme.PaymentCharged{PaymentID: "pay-" + key}, nil
}

func (p *fakePayments) Refund(_ context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refunded = append(p.refunded, id)
	return nil
}

// The README's code runs: the payment service charges, and when the stock
// cannot be reserved the charge is refunded.
func TestREADMECodeRuns(t *testing.T) {
	srv := sagatest.NewServer(t)
	nc, _ := srv.Connect()
	pay := &fakePayments{charged: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- readme.RunPayment(ctx, nc, pay) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunPayment: %v", err)
		}
	})
	c := srv.Client()
	r, _ := saga.NewRunner(c)
	_ = errors.Join(
		saga.Handle(r, readme.Reserve, func(_ context.Context, p readme.PaymentCharged) (readme.StockReserved, error) {
			if p.PaymentID == "pay-order/o2/charge" {
				return readme.StockReserved{}, saga.Abortf("sold out")
			}
			return readme.StockReserved{OrderID: p.OrderID}, nil
		}, func(context.Context, readme.PaymentCharged, readme.StockReserved) error { return nil }),
		saga.Handle(r, readme.Ship, func(context.Context, readme.StockReserved) (readme.DeliveryBooked, error) {
			return readme.DeliveryBooked{TrackingID: "t-1"}, nil
		}, nil),
	)
	sagatest.Run(t, r)
	for _, id := range []string{"o1", "o2"} {
		st, err := readme.PlaceOrder(ctx, c, readme.OrderPlaced{OrderID: id, CardToken: "tok_visa4242", Total: 100})
		if err != nil || st == "" {
			t.Fatalf("PlaceOrder %s: %q %v", id, st, err) // running, or already ended: the runners are quick
		}
	}
	sagatest.AwaitStatus(t, c, readme.Order, "o1", 20*time.Second, saga.StatusCompleted)
	sagatest.AwaitStatus(t, c, readme.Order, "o2", 20*time.Second, saga.StatusCompensated)
	pay.mu.Lock()
	defer pay.mu.Unlock()
	if len(pay.refunded) != 1 || pay.refunded[0] != "pay-order/o2/charge" {
		t.Errorf("refunds %q, want the charge of o2", pay.refunded)
	}
}

// first test begin
func TestSoldOutOrderIsRefunded(t *testing.T) {
	srv := sagatest.NewServer(t) // an embedded nats-server, gone when the test ends
	client := srv.Client()
	runner, _ := saga.NewRunner(client)
	pay := &fakePayments{charged: map[string]int{}}
	err := errors.Join(
		saga.Handle(runner, readme.Charge, func(ctx context.Context, o readme.OrderPlaced) (readme.PaymentCharged, error) {
			return pay.Charge(ctx, saga.IdempotencyKey(ctx), o.CardToken, o.Total)
		}, func(ctx context.Context, _ readme.OrderPlaced, p readme.PaymentCharged) error {
			return pay.Refund(ctx, p.PaymentID)
		}),
		saga.Handle(runner, readme.Reserve, func(context.Context, readme.PaymentCharged) (readme.StockReserved, error) {
			return readme.StockReserved{}, saga.Abortf("sold out") // so the charge is refunded
		}, nil),
	)
	if err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, runner) // until the test ends

	err = saga.Start(context.Background(), client, readme.Order, "o1", readme.OrderPlaced{OrderID: "o1", CardToken: "tok_visa4242", Total: 100})
	if err != nil {
		t.Fatal(err)
	}
	st := sagatest.AwaitStatus(t, client, readme.Order, "o1", 10*time.Second, saga.StatusCompensated)
	if st.Step("charge").Status != saga.StepCompensated {
		t.Errorf("charge is %s, want compensated", st.Step("charge").Status)
	}
	sagatest.AssertTimeline(t, client, readme.Order, "o1",
		"_saga:start", "charge:done", "reserve:failed", "charge:compensated")
}

// first test end

type fakeBank struct {
	mu     sync.Mutex
	tokens map[string]string // order -> callback token
}

func (b *fakeBank) Ask3DS(_ context.Context, orderID, token string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens[orderID] = token
	return nil
}

func (b *fakeBank) token(orderID string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens[orderID]
}

// The README's waits run: the bank's callback completes the charge, and
// the carrier's event completes the delivery.
func TestREADMEWaitsRun(t *testing.T) {
	srv := sagatest.NewServer(t)
	client := srv.Client()
	runner, err := saga.NewRunner(client)
	if err != nil {
		t.Fatal(err)
	}
	bank := &fakeBank{tokens: map[string]string{}}
	pay := &fakePayments{charged: map[string]int{}}
	err = errors.Join(readme.HandlePayment3DS(runner, bank, pay),
		saga.Handle(runner, readme.Reserve3DS, func(_ context.Context, p readme.PaymentCharged) (readme.StockReserved, error) {
			return readme.StockReserved{OrderID: p.OrderID}, nil
		}, nil),
		saga.Handle(runner, readme.Ship3DS, func(context.Context, readme.StockReserved) (readme.DeliveryBooked, error) {
			return readme.DeliveryBooked{TrackingID: "T1"}, nil
		}, nil),
		saga.Handle(runner, readme.Deliver, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, runner)
	ctx := context.Background()
	if err := saga.Start(ctx, client, readme.Order3DS, "o3", readme.OrderPlaced{OrderID: "o3", CardToken: "tok", Total: 5}); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 20*time.Second, func() bool { return bank.token("o3") != "" }, func() string { return "the bank was never asked" })
	if err := readme.OnBankCallback(ctx, client, bank.token("o3"), "pay-o3", "o3"); err != nil {
		t.Fatal(err)
	}
	sagatest.Poll(t, 20*time.Second, func() bool {
		st, err := client.Get(ctx, readme.Order3DS, "o3")
		return err == nil && st.Step("deliver").Status == saga.StepWaiting
	}, func() string { return "deliver never waited" })
	_, js := srv.Connect()
	bus, err := events.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Publish(ctx, bus, "parcel.delivered", "p-o3", readme.ParcelDelivered{OrderID: "o3", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, client, readme.Order3DS, "o3", 20*time.Second, saga.StatusCompleted)
	sagatest.AssertTimeline(t, client, readme.Order3DS, "o3", "_saga:start", "charge:waiting", "charge:done",
		"reserve3ds:done", "ship3ds:done", "deliver:waiting", "deliver:done")
}
