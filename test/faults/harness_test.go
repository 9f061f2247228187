// Package faults proves choreo under faults. The shop's services run as OS
// processes (built with -race and the choreofaults tag, which adds the
// crash points of services/kit/faults_on.go) against a real nats-server
// process, so that kill -9 is real. A load driver starts orders at a
// bounded rate, a fault driver kills and restarts processes and the broker
// on a seeded schedule, and test/checker reads the saga logs and the
// services' ledgers at the end. Each scenario logs one summary line:
//
//	sagas=N faults=K lost=0 double_effects=0 stuck=0 ...
//
// CHOREO_FAULTS_SEED=<n> replays a seed; CHOREO_SOAK=1 runs the long soak
// (about ten times the sagas).
package faults_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/customer"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shop/shoptest"
	"github.com/choreo-go/choreo/test/checker"
)

var (
	bin  string
	soak = os.Getenv("CHOREO_SOAK") != ""
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "choreo-bin-")
	if err != nil {
		panic(err)
	}
	for _, args := range [][]string{
		{"build", "-race", "-tags", "choreofaults", "-o", dir + string(os.PathSeparator), "github.com/choreo-go/choreo/services/cmd/..."},
		{"build", "-o", filepath.Join(dir, "nats-server"), "github.com/nats-io/nats-server/v2"},
	} {
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %v: %v\n%s", args, err, out)
			os.Exit(1)
		}
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitEnv is what every shop process of the suite runs with: a carrier
// that answers in 200ms, and a delivery asked again after 5s (a carrier
// killed with a parcel on its way loses it), so that no scenario waits on
// the demo's defaults.
var waitEnv = []string{"CHOREO_CARRIER_DELAY=200ms", "CHOREO_DELIVERY_TIMEOUT=5s"}

// scale is the number of sagas a scenario runs: n in CI, ten times n in
// the soak.
func scale(n int) int {
	if soak {
		return 10 * n
	}
	return n
}

// proc is a running binary. Its output is kept (the last MiB) for failure
// messages.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  []byte
	done chan struct{}
	err  error
}

func launch(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(filepath.Join(bin, name), args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out = append(p.out, sc.Bytes()...)
			p.out = append(p.out, '\n')
			if len(p.out) > 2<<20 {
				p.out = append([]byte(nil), p.out[len(p.out)-(1<<20):]...)
			}
			p.mu.Unlock()
		}
		r.Close()
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.out)
}

func (p *proc) exited() bool { return closed(p.done) }

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// term sends SIGTERM and returns the exit error (nil for a clean exit).
func (p *proc) term(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s did not exit %v after SIGTERM", p.name, timeout)
	}
}

// broker is a nats-server process with file storage, fsync on every write,
// on a fixed port so that clients reconnect to it after a restart.
type broker struct {
	t    testing.TB
	conf string
	url  string
	mu   sync.Mutex
	p    *proc
}

func newBroker(t testing.TB) *broker {
	t.Helper()
	dir := t.TempDir()
	port := shoptest.FreePort(t)
	conf := filepath.Join(dir, "nats.conf")
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nserver_name: faults\nmax_payload: 2MB\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", port, filepath.Join(dir, "js"))
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &broker{t: t, conf: conf, url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	b.start()
	return b
}

func (b *broker) start() {
	b.t.Helper()
	p := launch(b.t, "nats-server", nil, "-c", b.conf)
	b.mu.Lock()
	b.p = p
	b.mu.Unlock()
	sagatest.Poll(b.t, 30*time.Second, func() bool {
		nc, err := nats.Connect(b.url)
		if err != nil {
			return false
		}
		defer nc.Close()
		_, err = nc.Request("$JS.API.INFO", nil, time.Second)
		return err == nil
	}, func() string { return "nats-server did not start:\n" + p.output() })
}

func (b *broker) kill() {
	b.mu.Lock()
	p := b.p
	b.mu.Unlock()
	p.kill()
}

// participants are the services a saga needs; the gateway is not one.
// The carrier is one since order flow version 4: its ParcelDelivered
// completes the deliver step.
var participants = []string{"customer", "order", "payment", "inventory", "billing", "shipping", "carrier", "notification"}

// setup says how a scenario runs the shop.
type setup struct {
	instances map[string]int                               // per service; default 1
	env       func(h *harness, svc string, n int) []string // extra environment of a service's n-th start
	supervise bool                                         // restart a process that dies by itself
	url       string                                       // what the services connect to (default: the broker)
	// wrap, when set, returns what the services connect to instead of the
	// broker's URL (a proxy in front of it, say).
	wrap func(h *harness, brokerURL string) string
	// cluster, when set, starts the brokers instead of the single
	// nats-server process and returns their URLs.
	cluster func(h *harness) string
}

// instance is one process of a service, restarted by its supervisor when
// the scenario asks for it.
type instance struct {
	h      *harness
	svc    string
	idx    int
	mu     sync.Mutex
	p      *proc
	starts int
	held   bool // stopped on purpose: the supervisor leaves it down
}

type harness struct {
	t       *testing.T
	seed    uint64
	mu      sync.Mutex
	rng     *rand.Rand
	broker  *broker
	set     setup
	mail    string
	insts   map[string][]*instance
	nc      *nats.Conn
	d       kit.Deps
	faults  atomic.Int64
	crashes atomic.Int64 // processes that died by themselves (injected kill -9)
	fr, aq  string       // customers: one delivered to, one not
	// injected, when set, counts faults injected by something other than
	// the fault driver (a proxy).
	injected func() int64
}

func newHarness(t *testing.T, set setup) *harness {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHOREO_FAULTS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHOREO_FAULTS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed=%d (CHOREO_FAULTS_SEED=%d replays this schedule)", seed, seed)
	h := &harness{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), set: set,
		mail: t.TempDir(), insts: map[string][]*instance{}}
	brokerURL := ""
	if set.cluster != nil {
		brokerURL = set.cluster(h)
	} else {
		h.broker = newBroker(t)
		brokerURL = h.broker.url
	}
	if h.set.url == "" {
		h.set.url = brokerURL
	}
	if h.set.wrap != nil {
		h.set.url = h.set.wrap(h, brokerURL)
	}
	nc, err := nats.Connect(brokerURL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	h.nc = nc
	if h.d, err = kit.NewDeps(context.Background(), nc, "faults", nil); err != nil {
		t.Fatal(err)
	}
	for _, svc := range participants {
		n := 1
		if v, ok := set.instances[svc]; ok {
			n = v
		}
		for i := range n {
			in := &instance{h: h, svc: svc, idx: i}
			h.insts[svc] = append(h.insts[svc], in)
			in.start()
		}
	}
	// Stop the processes before the broker: a test's cleanups run last
	// first, and the broker was started first.
	t.Cleanup(func() {
		for _, ins := range h.insts {
			for _, in := range ins {
				in.hold()
			}
		}
	})
	ctx := context.Background()
	h.fr = h.register(ctx, "ada", "FR")
	h.aq = h.register(ctx, "scott", "AQ")
	// Orders need a card token: the load starts once payment makes them.
	sagatest.Poll(t, 60*time.Second, func() bool {
		_, err := h.tokenize(h.fr, "4242424242424242")
		return err == nil
	}, func() string { return "the payment service does not tokenize cards" })
	return h
}

func (h *harness) intn(n int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rng.IntN(n)
}

func (h *harness) register(ctx context.Context, name, country string) string {
	h.t.Helper()
	var id string
	sagatest.Poll(h.t, 60*time.Second, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		res, err := kit.Call[customer.RegisterRequest, customer.RegisterResult](cctx, h.nc, customer.RegisterSubject, customer.RegisterRequest{
			Name: name, Email: name + "@example.com", Address: schemas.Address{Line1: "1 Main St", City: "Springfield", Postcode: "12345", Country: country}})
		id = res.ID
		return err == nil
	}, func() string { return "the customer service does not register " + name })
	return id
}

func (in *instance) start() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.held = false
	in.startLocked()
}

func (in *instance) startLocked() {
	h := in.h
	in.starts++
	args := []string{"--nats", h.set.url}
	if in.svc == "notification" {
		args = append(args, "--mail-dir", h.mail)
	}
	// A crashed process's messages come back after the ack wait: 2s, not
	// the default 30s, so that a scenario is not mostly waiting. The
	// carrier delivers in 200ms (not 3s), and a delivery whose answer was
	// lost (the carrier killed with it on its way) is asked again after
	// 5s, not a minute. Every process has the same waits: they are part
	// of the flow's definition. A scenario's env comes after, and wins.
	env := append([]string{"CHOREO_ACK_WAIT=2s"}, waitEnv...)
	if h.set.env != nil {
		env = append(env, h.set.env(h, in.svc, in.starts)...)
	}
	p := launch(h.t, in.svc, env, args...)
	in.p = p
	if h.set.supervise {
		go in.supervise(p)
	}
}

// supervise restarts p's service when p dies by itself.
func (in *instance) supervise(p *proc) {
	<-p.done
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.held || in.p != p || in.h.t.Context().Err() != nil {
		return
	}
	if strings.Contains(p.output(), "CHOREO_CRASH") {
		in.h.crashes.Add(1)
	}
	time.Sleep(50 * time.Millisecond) // no restart storm
	in.startLocked()
}

// hold kills the instance (SIGKILL) and keeps it down.
func (in *instance) hold() {
	in.mu.Lock()
	in.held = true
	p := in.p
	in.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// stop stops the instance with SIGTERM, keeps it down and returns the exit
// error.
func (in *instance) stop() error {
	in.mu.Lock()
	in.held = true
	p := in.p
	in.mu.Unlock()
	return p.term(60 * time.Second)
}

func (in *instance) proc() *proc {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.p
}

// load places n orders at up to rate per second, with at most 32 in
// flight, and returns the ids whose placement was acknowledged. An order
// whose placement failed (a process or the broker down) was not
// acknowledged and is retried as a new order, up to deadline.
type load struct {
	acked   []string
	refused int    // placements not acknowledged
	lastErr string // why the last one was not
	mu      sync.Mutex
	wg      sync.WaitGroup
	done    chan struct{}
}

func (h *harness) startLoad(n, rate int) *load {
	kinds := shoptest.Mix(n, h.intn)
	return h.startLoadOf(n, rate, func(l *load, i int) bool { return h.place(l, kinds[i]) })
}

// startLoadOf is startLoad with the orders placed by place: the i-th
// order, true when its placement was acknowledged.
func (h *harness) startLoadOf(n, rate int, place func(l *load, i int) bool) *load {
	l := &load{done: make(chan struct{})}
	sem := make(chan struct{}, 32)
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		deadline := time.Now().Add(5*time.Minute + time.Duration(n/rate)*2*time.Second)
		for i := range n {
			<-tick.C
			if h.t.Context().Err() != nil {
				break
			}
			sem <- struct{}{}
			l.wg.Add(1)
			go func() {
				defer func() { <-sem; l.wg.Done() }()
				// Not acknowledged: place it again, as a new order.
				for !place(l, i) && time.Now().Before(deadline) && h.t.Context().Err() == nil {
					time.Sleep(100 * time.Millisecond)
				}
			}()
		}
		l.wg.Wait()
	}()
	return l
}

// tokenize exchanges a card number for a token at the payment service.
func (h *harness) tokenize(customer, number string) (schemas.Card, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return kit.Call[payment.TokenizeRequest, schemas.Card](ctx, h.nc, payment.TokenizeSubject, payment.TokenizeRequest{CustomerID: customer, Number: number})
}

func (h *harness) place(l *load, k shoptest.Kind) bool {
	customer, number := h.fr, "4242424242424242"
	items := []order.Line{{SKU: "sku-sticker", Qty: 1}}
	switch k {
	case shoptest.Declined:
		number = payment.DeclinedCard
	case shoptest.SoldOut:
		items = append(items, order.Line{SKU: "sku-sold-out", Qty: 1})
	case shoptest.Undelivered:
		customer = h.aq
	}
	_, ok := h.placeOrder(l, customer, number, items)
	return ok
}

// placeOrder places one order of customer's, paid with the card number,
// and returns its id when the placement was acknowledged.
func (h *harness) placeOrder(l *load, customer, number string, items []order.Line) (string, bool) {
	req := order.PlaceRequest{CustomerID: customer, Items: items}
	// As the gateway does: the card is exchanged for a token first.
	card, err := h.tokenize(customer, number)
	var res order.PlaceResult
	if err == nil {
		req.Card = card
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err = kit.Call[order.PlaceRequest, order.PlaceResult](ctx, h.nc, order.PlaceSubject, req)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.refused++
		l.lastErr = err.Error()
		return "", false
	}
	l.acked = append(l.acked, res.ID)
	return res.ID, true
}

func (l *load) wait() {
	<-l.done
}

func (l *load) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acked)
}

// running reports whether the load driver is still placing orders.
func (l *load) running() bool { return !closed(l.done) }

// settle waits until every acknowledged saga has ended (or the bound
// passes), then runs the checker on them and on every other saga in the
// broker, logs the summary line and fails the test on a broken invariant.
func (h *harness) settle(l *load, bound time.Duration, extra ...string) checker.Report {
	h.t.Helper()
	return h.settleWith(l, bound, nil, extra...)
}

// settleWith is settle with before called once every saga has ended (or
// the bound passed), before the checker reads.
func (h *harness) settleWith(l *load, bound time.Duration, before func(), extra ...string) checker.Report {
	h.t.Helper()
	l.wait()
	ids := l.ids()
	ctx := context.Background()
	shoptest.AwaitEnded(ctx, h.d, ids, bound, 200*time.Millisecond)
	// Sagas whose placement was not acknowledged are checked too: they
	// must not break I2-I5 either.
	all := slices.Clone(ids)
	for _, s := range shoptest.ListSagas(h.t, ctx, h.d) {
		if !slices.Contains(all, s) {
			all = append(all, s)
		}
	}
	all = append(all, extra...)
	if before != nil {
		before()
	}
	// The checker reads through the broker, which may still be electing
	// leaders after a fault (a cluster answers "no responders" then): a
	// read that fails is tried again, for a while.
	rep := shoptest.Check(h.t, ctx, h.d, all)
	rep.Sagas = len(ids)
	faults := int(h.faults.Load() + h.crashes.Load())
	if h.injected != nil {
		faults += int(h.injected())
	}
	h.t.Logf("%s refused=%d seed=%d", rep.Summary(faults), l.refused, h.seed)
	if l.lastErr != "" {
		h.t.Logf("the last placement refused: %s", l.lastErr)
	}
	if !rep.OK() {
		h.t.Errorf("invariants broken (seed %d): %v", h.seed, rep.Problems)
		h.explain(ctx, rep.Problems)
	}
	if len(ids) == 0 {
		h.t.Error("no order was acknowledged: the scenario proves nothing")
	}
	return rep
}

// alive fails the test for a process that exited when nobody stopped it.
func (h *harness) alive() {
	h.t.Helper()
	for svc, ins := range h.insts {
		for _, in := range ins {
			in.mu.Lock()
			p, held := in.p, in.held
			in.mu.Unlock()
			if !held && p.exited() {
				h.t.Errorf("%s[%d] exited: %v\n%s", svc, in.idx, p.err, tail(p.output(), 3000))
			}
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// every runs fn every period (jittered by the seed) until stop closes.
func (h *harness) every(period time.Duration, stop <-chan struct{}, fn func()) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			d := period/2 + time.Duration(h.intn(int(period)))
			select {
			case <-stop:
				return
			case <-time.After(d):
			}
			select {
			case <-stop:
				return
			default:
				fn()
			}
		}
	}()
	return &wg
}

var orderID = regexp.MustCompile(`ord-[A-Za-z0-9]+`)

// explain logs the saga logs of the first problems.
func (h *harness) explain(ctx context.Context, problems []string) {
	seen := map[string]bool{}
	for _, p := range problems {
		id := orderID.FindString(p)
		if id == "" || seen[id] || len(seen) == 4 {
			continue
		}
		seen[id] = true
		evs, err := h.d.Sagas.Timeline(ctx, schemas.OrderFlow, id)
		var b strings.Builder
		for _, e := range evs {
			fmt.Fprintf(&b, "  %s %-9s %-12s %s", e.Time.Format("15:04:05.000"), e.Step, e.Phase, e.State.Status)
			for _, st := range e.State.Steps {
				fmt.Fprintf(&b, " %s=%s", st.Name, st.Status)
			}
			b.WriteString("\n")
		}
		h.t.Logf("saga %s (%v):\n%s", id, err, b.String())
		for svc, ins := range h.insts {
			for i, in := range ins {
				for _, line := range strings.Split(in.proc().output(), "\n") {
					if strings.Contains(line, id) {
						h.t.Logf("  %s[%d]: %s", svc, i, line)
					}
				}
			}
		}
	}
	if len(seen) == 0 {
		return
	}
	// Where the steps' consumers stand: a message stuck with one of them
	// shows here.
	s, err := h.d.JS.Stream(ctx, access.StreamName)
	if err != nil {
		h.t.Logf("consumers: %v", err)
		return
	}
	held := false
	for name := range s.ConsumerNames(ctx).Name() {
		c, err := s.Consumer(ctx, name)
		if err != nil {
			h.t.Logf("consumer %s: %v", name, err)
			continue
		}
		ci := c.CachedInfo()
		leader := ""
		if ci.Cluster != nil {
			leader = ci.Cluster.Leader
		}
		h.t.Logf("consumer %s: pending=%d ack_pending=%d redelivered=%d waiting=%d delivered=%d ack_floor=%d leader=%s",
			name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting, ci.Delivered.Stream, ci.AckFloor.Stream, leader)
		if ci.NumAckPending > 0 {
			held = true
		}
	}
	if held {
		// Whether the broker still tries to deliver them.
		for range 6 {
			time.Sleep(5 * time.Second) // watching the consumers over half a minute
			for name := range s.ConsumerNames(ctx).Name() {
				c, err := s.Consumer(ctx, name)
				if err != nil || c.CachedInfo().NumAckPending == 0 {
					continue
				}
				ci := c.CachedInfo()
				h.t.Logf("consumer %s: ack_pending=%d redelivered=%d waiting=%d delivered=%d/%d last=%v", name, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting, ci.Delivered.Consumer, ci.Delivered.Stream, ci.Delivered.Last)
			}
		}
		h.dumpStacks()
	}
}

// dumpStacks has every live service print its goroutines (SIGQUIT; it
// exits) and logs the distinct stacks that run choreo's or the shop's code:
// what holds a message that is never acknowledged.
func (h *harness) dumpStacks() {
	for svc, ins := range h.insts {
		for i, in := range ins {
			p := in.proc()
			if p.exited() {
				continue
			}
			_ = p.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				continue
			}
			out := p.output()
			if k := strings.Index(out, "SIGQUIT"); k >= 0 {
				before := strings.Split(strings.TrimSpace(out[:k]), "\n")
				h.t.Logf("%s[%d]: its last lines:\n%s", svc, i, strings.Join(before[max(0, len(before)-15):], "\n"))
				out = out[k:]
			}
			seen := map[string]int{}
			var order []string
			for _, g := range strings.Split(out, "\n\ngoroutine ") {
				if !strings.Contains(g, "choreo-go/choreo/") && !strings.Contains(g, "nats.go/jetstream") {
					continue
				}
				_, body, _ := strings.Cut(g, "\n")
				body = addr.ReplaceAllString(body, "")
				if seen[body] == 0 {
					order = append(order, body)
				}
				seen[body]++
			}
			for _, body := range order {
				h.t.Logf("%s[%d]: %d goroutines:\n%s", svc, i, seen[body], body)
			}
		}
	}
}

var addr = regexp.MustCompile(`( \+0x[0-9a-f]+| 0x[0-9a-f]+|\(0x[0-9a-f, .]*\))`)
