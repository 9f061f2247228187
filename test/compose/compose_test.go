// Package compose_test is the smoke test of docker-compose.yml: it builds
// the images (deploy/build.sh), makes the secrets (deploy/secrets.sh),
// brings the stack up under a project name of its own, registers customers
// and places a few hundred orders through the gateway, stops a nats node
// and a payment container under that load and starts them again, then
// checks from the outside that every order ended as its card and stock
// decide, with nothing lost or done twice (test/checker), and that each
// order's outcome e-mail was sent once. The attacks of test/security run
// against the stack too. Then `docker compose down -v`.
//
// It is skipped, saying why, when `docker info` fails or no compose tool
// is installed.
package compose_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/kit"
	"github.com/choreo-go/choreo/services/order"
	"github.com/choreo-go/choreo/services/payment"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
	"github.com/choreo-go/choreo/test/checker"
)

// orders is how many orders the load places (acknowledged ones), at most
// rate a second: the faults come while it runs.
const (
	orders = 300
	rate   = 6
)

// stack is one compose project brought up by the test.
type stack struct {
	t        *testing.T
	root     string   // the repository
	compose  []string // "docker compose" or "docker-compose"
	project  string
	tag      string
	secrets  string
	httpPort int
	natsPort [3]int
	promPort int // Prometheus's API, on 127.0.0.1 (prometheus_test.go)
}

func TestComposeStack(t *testing.T) {
	began := time.Now()
	if out, err := command(30*time.Second, "", nil, "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("skipped: `docker info` failed, so there is no Docker engine to run the compose stack on: %v %s", err, firstLine(out))
	}
	s := &stack{t: t, project: fmt.Sprintf("choreo-smoke-%d", os.Getpid()), tag: fmt.Sprintf("smoke-%d", os.Getpid()), secrets: t.TempDir()}
	switch {
	case runs("docker", "compose", "version"):
		s.compose = []string{"docker", "compose"}
	case runs("docker-compose", "version"):
		s.compose = []string{"docker-compose"}
	default:
		t.Skip("skipped: neither `docker compose` nor `docker-compose` runs here")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s.root = root
	s.httpPort = shoptest.FreePort(t)
	for i := range s.natsPort {
		s.natsPort[i] = shoptest.FreePort(t)
	}
	s.promPort = shoptest.FreePort(t)

	s.run(8*time.Minute, "deploy/build.sh")
	t.Cleanup(func() {
		_, _ = command(time.Minute, s.root, nil, "docker", "rmi", "choreo-nats:"+s.tag, "choreo-services:"+s.tag, "choreo-prometheus:"+s.tag)
	})
	s.run(3*time.Minute, "deploy/secrets.sh")
	t.Cleanup(s.down)
	s.run(5*time.Minute, s.compose[0], append(s.compose[1:], "up", "-d")...)
	if n := len(s.containers("payment")); n != 2 {
		t.Fatalf("%d payment containers, want 2", n)
	}
	if n := len(s.containers("inventory")); n != 2 {
		t.Fatalf("%d inventory containers, want 2", n)
	}
	s.awaitHealthy(3 * time.Minute)
	d := s.admin()
	s.checkReplicas(d)
	t.Logf("stack up and healthy after %s", time.Since(began).Round(time.Second))

	// The load, with a nats node and a payment container stopped and
	// started again in the middle of it.
	faults := 0
	l := s.load()
	payment1, nats1 := s.containers("payment")[0], s.containers("nats-1")[0]
	l.awaitAcked(orders/5, 3*time.Minute)
	s.together([]string{"docker", "stop", "-t", "5", nats1}, []string{"docker", "stop", "-t", "5", payment1})
	faults += 2
	t.Logf("stopped nats-1 and payment container %.12s with %d orders acknowledged", payment1, l.count())
	l.awaitAcked(l.count()+orders/5, time.Minute)
	s.together([]string{"docker", "start", nats1}, []string{"docker", "start", payment1})
	t.Logf("started them again with %d orders acknowledged", l.count())
	l.wait()
	s.awaitHealthy(3 * time.Minute)

	ids := l.ids()
	if len(ids) < orders {
		t.Errorf("%d orders acknowledged, want %d (%d placements refused, the last: %s)", len(ids), orders, l.refused, l.lastErr)
	}
	rep := s.settle(d, l, 4*time.Minute)
	if len(ids) > 0 {
		s.checkSealed(d, ids[0])
	}
	s.checkPrometheus(2 * time.Minute)
	s.logDeadLetters(d)
	emails := s.checkEmails(d, l)
	t.Logf("compose smoke: %s orders=%d refused=%d confirmed=%d rejected=%d emails=%d duration=%s",
		rep.Summary(faults), len(ids), l.refused, l.confirmed, l.rejected, emails, time.Since(began).Round(time.Second))

	// The attacks of the security issue, against this stack.
	out, err := command(6*time.Minute, s.root, []string{
		"CHOREO_SECURITY_NATS=" + s.natsURLs(),
		fmt.Sprintf("CHOREO_SECURITY_HTTP=127.0.0.1:%d", s.httpPort),
		"CHOREO_SECURITY_CREDENTIALS=" + filepath.Join(s.secrets, "credentials"),
		"CHOREO_SECURITY_TLS_CA=" + filepath.Join(s.secrets, "ca.pem"),
		"CHOREO_SECURITY_TLS_CERT=" + filepath.Join(s.secrets, "client-cert.pem"),
		"CHOREO_SECURITY_TLS_KEY=" + filepath.Join(s.secrets, "client-key.pem"),
		"CHOREO_SECURITY_OPERATOR_TOKEN=" + s.operatorToken(),
		"CHOREO_KEY_FILE=" + filepath.Join(s.secrets, "payload-keys"),
	}, "go", "test", "-count=1", "-v", "-run",
		"^(TestOutsiderIsRefused|TestRogueConsumerIsRefused|TestForgedOutcomeIsRefused|TestForgingParticipantIsRefused|TestOtherBucketIsRefused|TestStreamAdminIsRefused|TestOperatorActsAreRefused|TestCustomerDataNeedsTheCustomersToken|TestWebsocketPushesOnlyTheCustomersOwnOrders|TestRegistryLieIsNotShown|TestPlantedDeadLetterIsNotReplayed|TestReaderReadsNoDeadLetters|TestReaderCreatesNoConsumer)$",
		"./test/security")
	if err != nil {
		t.Errorf("test/security against the stack: %v\n%s", err, out)
	} else if passed := len(regexp.MustCompile(`(?m)^--- PASS: Test`).FindAllString(out, -1)); passed != 13 {
		t.Errorf("test/security against the stack: %d of 13 tests passed\n%s", passed, out)
	} else {
		t.Logf("test/security against the stack: 13 attacks refused")
	}
	t.Logf("took %s in all", time.Since(began).Round(time.Second))
}

// together runs the commands at once, each as run does, and fails the
// test once all have ended if one failed.
func (s *stack) together(cmds ...[]string) {
	s.t.Helper()
	errs := make([]error, len(cmds))
	var wg sync.WaitGroup
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := command(time.Minute, s.root, s.env(), c[0], c[1:]...); err != nil {
				errs[i] = fmt.Errorf("%s: %v\n%s", strings.Join(c, " "), err, out)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.t.Fatal(err)
	}
}

// runs reports whether the command exits 0.
func runs(name string, args ...string) bool {
	_, err := command(30*time.Second, "", nil, name, args...)
	return err == nil
}

// command runs name in dir with the environment plus env, for at most
// timeout, and returns its combined output.
func command(timeout time.Duration, dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: no end in %s", name, strings.Join(args, " "), timeout)
	}
	return string(out), err
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// env is what the compose file and the scripts take.
func (s *stack) env() []string {
	return []string{
		"COMPOSE_PROJECT_NAME=" + s.project,
		"CHOREO_TAG=" + s.tag,
		"CHOREO_SECRETS=" + s.secrets,
		"CHOREO_HTTP_PORT=" + strconv.Itoa(s.httpPort),
		"CHOREO_NATS_PORT_1=" + strconv.Itoa(s.natsPort[0]),
		"CHOREO_NATS_PORT_2=" + strconv.Itoa(s.natsPort[1]),
		"CHOREO_NATS_PORT_3=" + strconv.Itoa(s.natsPort[2]),
		"CHOREO_PROM_PORT=" + strconv.Itoa(s.promPort),
	}
}

// run runs a command of the stack and fails the test if it fails.
func (s *stack) run(timeout time.Duration, name string, args ...string) string {
	s.t.Helper()
	out, err := command(timeout, s.root, s.env(), name, args...)
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func (s *stack) composeOut(timeout time.Duration, args ...string) (string, error) {
	return command(timeout, s.root, s.env(), s.compose[0], append(s.compose[1:], args...)...)
}

// down shows the logs of a failed run, then removes the stack, its
// volumes included.
func (s *stack) down() {
	if s.t.Failed() {
		out, _ := s.composeOut(time.Minute, "logs", "--no-color", "--tail", "40")
		s.t.Logf("the stack's logs (last lines of each):\n%s", out)
	}
	if out, err := s.composeOut(3*time.Minute, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
		s.t.Errorf("compose down: %v\n%s", err, out)
	}
}

// containers lists the ids of a service's containers.
func (s *stack) containers(service string) []string {
	s.t.Helper()
	out, err := s.composeOut(time.Minute, "ps", "-q", service)
	if err != nil {
		s.t.Fatalf("compose ps %s: %v\n%s", service, err, out)
	}
	return strings.Fields(out)
}

// awaitHealthy waits until every container of the stack but provision's
// runs and its health check passes.
func (s *stack) awaitHealthy(bound time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(bound)
	var sick []string
	for {
		out, err := command(time.Minute, s.root, nil, "docker", "ps", "-a", "--filter", "label=com.docker.compose.project="+s.project,
			"--format", `{{.Label "com.docker.compose.service"}} {{.ID}} {{.Status}}`)
		if err != nil {
			s.t.Fatalf("docker ps: %v\n%s", err, out)
		}
		sick = sick[:0]
		n := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" || strings.HasPrefix(line, "provision ") {
				continue
			}
			n++
			if !strings.Contains(line, "(healthy)") {
				sick = append(sick, line)
			}
		}
		if n > 0 && len(sick) == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("containers not healthy after %s: %v", bound, sick)
		}
		time.Sleep(time.Second) // polling docker until the bound
	}
}

func (s *stack) natsURLs() string {
	var urls []string
	for _, p := range s.natsPort {
		urls = append(urls, fmt.Sprintf("tls://127.0.0.1:%d", p))
	}
	return strings.Join(urls, ",")
}

// admin connects to the cluster as the admin identity, over TLS.
func (s *stack) admin() kit.Deps {
	s.t.Helper()
	conf, err := kit.ClientTLS(filepath.Join(s.secrets, "ca.pem"), filepath.Join(s.secrets, "client-cert.pem"), filepath.Join(s.secrets, "client-key.pem"))
	if err != nil {
		s.t.Fatal(err)
	}
	seed, err := nats.NkeyOptionFromSeed(filepath.Join(s.secrets, "credentials", shop.Admin+".nk"))
	if err != nil {
		s.t.Fatal(err)
	}
	nc, err := nats.Connect(s.natsURLs(), seed, nats.Secure(conf), nats.CustomInboxPrefix(access.InboxPrefix(shop.Admin)),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		s.t.Fatalf("connect as the admin: %v", err)
	}
	s.t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The stack encrypts payloads with the key ring secrets.sh made: the
	// admin reads them with it.
	keys, err := kit.KeyOptions(filepath.Join(s.secrets, "payload-keys"))
	if err != nil {
		s.t.Fatal(err)
	}
	d, err := kit.NewDeps(ctx, nc, shop.Admin, nil, keys...)
	if err != nil {
		s.t.Fatalf("admin: %v", err)
	}
	return d
}

// checkSealed checks that the stack encrypts what choreo stores: the
// start of an order's saga carries the key's id and no JSON in clear, and
// the admin, given the key, reads it.
func (s *stack) checkSealed(d kit.Deps, id string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := d.JS.Stream(ctx, "CHOREO")
	if err != nil {
		s.t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, "choreo.log.order."+id+".*._saga.start")
	if err != nil {
		s.t.Fatalf("order %s's saga log: %v", id, err)
	}
	tl, err := d.Sagas.Timeline(ctx, schemas.OrderFlow, id)
	switch {
	case err != nil:
		s.t.Errorf("order %s's timeline: %v", id, err)
	case m.Header.Get("Choreo-Key") == "", bytes.Contains(m.Data, []byte(`"order_id"`)):
		s.t.Errorf("order %s's input (%s) is stored in clear: key %q", id, m.Subject, m.Header.Get("Choreo-Key"))
	case tl[0].Encrypted || !bytes.Contains(tl[0].Data, []byte(id)):
		s.t.Errorf("order %s's input does not open with the key: %s", id, tl[0].Data)
	}
}

// checkReplicas checks that the provisioned streams have 3 replicas, on
// a server of version 2.12.7 or later (the 2026 advisories).
func (s *stack) checkReplicas(d kit.Deps) {
	s.t.Helper()
	if v := d.NC.ConnectedServerVersion(); !atLeast(v, 2, 12, 7) {
		s.t.Errorf("nats-server %s, want 2.12.7 or later", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range append(slices.Clone(kit.Streams), "KV_payment", "KV_inventory") {
		st, err := d.JS.Stream(ctx, name)
		if err != nil {
			s.t.Fatalf("stream %s: %v", name, err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			s.t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}
}

// operatorToken is the gateway's operator token, from the secrets.
func (s *stack) operatorToken() string {
	b, err := os.ReadFile(filepath.Join(s.secrets, "operator-token"))
	if err != nil {
		s.t.Errorf("the operator token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// load places orders through the gateway.
type load struct {
	s       *stack
	base    string
	http    *http.Client
	fr, aq  []string          // customers in France, and in Antarctica (not delivered to)
	tokens  map[string]string // customer id -> the token its registration answered
	mu      sync.Mutex
	owners  map[string]string // order id -> its customer
	acked   map[string]shoptest.Kind
	order   []string
	refused int
	lastErr string
	keyGen  map[int]int // per order, how many of its keys were spent
	done    chan struct{}
	acks    chan struct{} // a tick per acknowledged order
	// After settle: how the orders ended.
	confirmed, rejected int
}

// load registers customers, then places orders in the background, at
// most rate a second and 16 at a time.
func (s *stack) load() *load {
	s.t.Helper()
	l := &load{s: s, base: fmt.Sprintf("http://127.0.0.1:%d", s.httpPort), http: &http.Client{Timeout: 20 * time.Second},
		acked: map[string]shoptest.Kind{}, tokens: map[string]string{}, owners: map[string]string{}, keyGen: map[int]int{}, done: make(chan struct{}), acks: make(chan struct{}, orders*2)}
	for i := range 4 {
		l.fr = append(l.fr, l.register(fmt.Sprintf("Ada %d", i), "FR"))
	}
	l.aq = append(l.aq, l.register("Amundsen", "AQ"))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	kinds := shoptest.Mix(orders, rng.IntN)
	go func() {
		defer close(l.done)
		sem := make(chan struct{}, 16)
		var wg sync.WaitGroup
		deadline := time.Now().Add(6 * time.Minute)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for i, k := range kinds {
			<-tick.C
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				// Not acknowledged: placed again with the same
				// Idempotency-Key, so that it is the same order.
				for !l.place(i, k) && time.Now().Before(deadline) {
					time.Sleep(200 * time.Millisecond) // a pause before trying again
				}
			}()
		}
		wg.Wait()
	}()
	return l
}

func (l *load) post(path string, body any, headers ...string) (int, map[string]any, error) {
	code, out, _, err := shoptest.Do(l.http, "POST", l.base+path, body, headers...)
	return code, out, err
}

func (l *load) register(name, country string) string {
	l.s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		code, res, err := l.post("/api/customers", map[string]any{"name": name, "email": shoptest.Email(name), "address": shoptest.Address(country)})
		if code == http.StatusCreated {
			id, _ := res["id"].(string)
			l.tokens[id], _ = res["token"].(string)
			return id
		}
		if time.Now().After(deadline) {
			l.s.t.Fatalf("register %s: %d %v %v", name, code, res, err)
		}
		time.Sleep(500 * time.Millisecond) // the gateway starting
	}
}

// place places one order of kind k and reports whether it was
// acknowledged.
func (l *load) place(i int, k shoptest.Kind) bool {
	customer, card := l.fr[i%len(l.fr)], "4242424242424242"
	items := []any{shoptest.Item("sku-sticker", 1)}
	switch k {
	case shoptest.Declined:
		card = payment.DeclinedCard
	case shoptest.SoldOut:
		items = append(items, shoptest.Item("sku-sold-out", 1))
	case shoptest.Undelivered:
		customer = l.aq[0]
	}
	l.mu.Lock()
	key := fmt.Sprintf("smoke-order-%d-%d", i, l.keyGen[i])
	l.mu.Unlock()
	code, res, err := l.post("/api/orders", map[string]any{"customer_id": customer, "items": items, "card": card},
		append(shoptest.Bearer(l.tokens[customer]), "Idempotency-Key", key)...)
	l.mu.Lock()
	defer l.mu.Unlock()
	id, _ := res["id"].(string)
	if err != nil || code != http.StatusAccepted || id == "" {
		l.refused++
		l.lastErr = fmt.Sprintf("%d %v %v", code, res, err)
		if msg, _ := res["error"].(string); strings.Contains(msg, order.KeySpent) {
			l.keyGen[i]++ // not placed: the next try is a new order
		}
		return false
	}
	l.acked[id] = k
	l.owners[id] = customer
	l.order = append(l.order, id)
	l.acks <- struct{}{}
	return true
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.order)
}

func (l *load) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.order)
}

// awaitAcked waits until n orders were acknowledged, the load ended, or
// the bound passed.
func (l *load) awaitAcked(n int, bound time.Duration) {
	timeout := time.After(bound)
	for l.count() < n {
		select {
		case <-l.acks:
		case <-l.done:
			return
		case <-timeout:
			return
		}
	}
}

func (l *load) wait() { <-l.done }

// settle waits until every acknowledged order's saga ended (or the bound
// passed), runs the checker on them and on every other saga in the
// broker, and checks that each ended as its card and stock decide, in the
// broker and at the gateway.
func (s *stack) settle(d kit.Deps, l *load, bound time.Duration) checker.Report {
	s.t.Helper()
	ctx := context.Background()
	ids := l.ids()
	deadline := time.Now().Add(bound)
	states := shoptest.AwaitEnded(ctx, d, ids, bound, 500*time.Millisecond)
	all := slices.Clone(ids)
	list := shoptest.ListSagas(s.t, ctx, d)
	var unacked []string
	for _, id := range list {
		if !slices.Contains(all, id) {
			all = append(all, id)
			unacked = append(unacked, id)
		}
	}
	// A placement refused (a reply lost in a failover) is asked again with
	// its key: the order it placed, if any, is the one acknowledged then.
	if len(unacked) > 0 {
		s.t.Errorf("%d orders the shop holds that no customer was told of (a placement asked again became a second order?): %v", len(unacked), unacked)
	}
	rep := shoptest.Check(s.t, ctx, d, all)
	rep.Sagas = len(ids)
	if !rep.OK() {
		s.t.Errorf("invariants broken: %v", rep.Problems)
	}
	// Each order as its card and stock decide, at the broker and at the
	// gateway (which learns it from the events).
	wrong := 0
	for _, id := range ids {
		wantSaga, wantOrder := l.acked[id].Want()
		if st := states[id]; st == nil || st.Status != wantSaga {
			wrong++
			if wrong <= 10 {
				s.t.Errorf("order %s (kind %d): saga %s, want %q", id, l.acked[id], describe(st), wantSaga)
			}
			continue
		}
		got := l.awaitStatus(id, wantOrder, time.Until(deadline)+30*time.Second)
		if got != wantOrder {
			wrong++
			if wrong <= 10 {
				s.t.Errorf("order %s (kind %d): the gateway says %q, want %q", id, l.acked[id], got, wantOrder)
			}
			continue
		}
		if wantOrder == "confirmed" {
			l.confirmed++
		} else {
			l.rejected++
		}
	}
	if wrong > 0 {
		s.t.Errorf("%d of %d orders did not end as their card and stock decide", wrong, len(ids))
	}
	return rep
}

// describe says how a saga ended, and why.
func describe(st *saga.State) string {
	if st == nil {
		return "not ended"
	}
	var steps []string
	for _, step := range st.Steps {
		steps = append(steps, step.Name+"="+string(step.Status))
	}
	return fmt.Sprintf("%q (reason %q; steps %s)", st.Status, st.Reason, strings.Join(steps, " "))
}

// awaitStatus polls the gateway for the order's status until it is want
// or the bound passes, and returns the last status seen.
func (l *load) awaitStatus(id, want string, bound time.Duration) string {
	deadline := time.Now().Add(bound)
	for {
		l.mu.Lock()
		token := l.tokens[l.owners[id]]
		l.mu.Unlock()
		_, out, _, _ := shoptest.Do(l.http, "GET", l.base+"/api/orders/"+id, nil, shoptest.Bearer(token)...)
		got, _ := out["status"].(string)
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond) // the gateway catching up, up to the bound
	}
}

// checkEmails reads the notification service's mail directory out of its
// container and checks that each customer got one welcome, each order one
// outcome e-mail, the one its saga's end decides (confirmed or rejected),
// and, when the shop sends receipts, each charged order one receipt.
// E-mails are files named <kind>-<subject id>.eml; it returns how many.
func (s *stack) checkEmails(d kit.Deps, l *load) int {
	s.t.Helper()
	charged := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	charges, err := payment.Ledger(ctx, d)
	if err != nil {
		s.t.Fatalf("payment ledger: %v", err)
	}
	for _, c := range charges {
		if c.Charges > 0 {
			charged[c.OrderID] = true
		}
	}
	ids := l.ids()
	var problems []string
	var count int
	deadline := time.Now().Add(time.Minute)
	for {
		mail, err := s.mail()
		if err != nil {
			s.t.Fatal(err)
		}
		count = len(mail)
		problems = problems[:0]
		// A receipt is named by its payment; it names its order.
		receipts := map[string]int{}
		for name, orders := range mail {
			if strings.HasPrefix(name, "receipt-") {
				for _, id := range orders {
					receipts[id]++
				}
			}
		}
		for _, c := range append(slices.Clone(l.fr), l.aq...) {
			if n := len(mail["welcome-"+c]); n != 1 {
				problems = append(problems, fmt.Sprintf("customer %s: %d welcome e-mails", c, n))
			}
		}
		for _, id := range ids {
			_, want := l.acked[id].Want()
			other := map[string]string{"confirmed": "rejected", "rejected": "confirmed"}[want]
			if n := len(mail[want+"-"+id]); n != 1 {
				problems = append(problems, fmt.Sprintf("order %s: %d %s e-mails", id, n, want))
			}
			if n := len(mail[other+"-"+id]); n != 0 {
				problems = append(problems, fmt.Sprintf("order %s: %d %s e-mails, it was %s", id, n, other, want))
			}
			if len(receipts) > 0 {
				want := 0
				if charged[id] {
					want = 1
				}
				if n := receipts[id]; n != want {
					problems = append(problems, fmt.Sprintf("order %s: %d receipts, want %d", id, n, want))
				}
			}
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second) // the last e-mails being written, up to the bound
	}
	if len(problems) > 0 {
		s.t.Errorf("%d problems with the e-mails, the first: %v", len(problems), problems[:min(10, len(problems))])
	}
	return count
}

// mail reads the e-mails in the notification container's /mail: by name
// (without .eml), the order ids each names (one entry for an e-mail that
// names none). Each e-mail's Message-ID must be its name.
func (s *stack) mail() (map[string][]string, error) {
	ids := s.containers("notification")
	if len(ids) != 1 {
		return nil, fmt.Errorf("%d notification containers, want 1", len(ids))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "cp", ids[0]+":/mail", "-")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker cp /mail: %v %s", err, stderr.String())
	}
	mail := map[string][]string{}
	tr := tar.NewReader(&out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return mail, nil
		}
		if err != nil {
			return nil, err
		}
		base := filepath.Base(h.Name)
		if h.Typeflag != tar.TypeReg || !strings.HasSuffix(base, ".eml") {
			continue
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(base, ".eml")
		if !bytes.Contains(body, []byte("Message-ID: <"+name+"@")) {
			return nil, fmt.Errorf("e-mail %s: its Message-ID is not its name", base)
		}
		ids := slices.Compact(slices.Sorted(slices.Values(orderID.FindAllString(string(body), -1))))
		if len(ids) == 0 {
			ids = []string{""}
		}
		mail[name] = ids
	}
}

// orderID matches the shop's order ids (kit.NewID("ord")).
var orderID = regexp.MustCompile(`\bord-[0-9A-Za-z]+\b`)

// atLeast reports whether the version v (major.minor.patch[-pre]) is at
// least the one given.
func atLeast(v string, want ...int) bool {
	v, _, _ = strings.Cut(v, "-")
	parts := strings.Split(v, ".")
	for i, w := range want {
		if i >= len(parts) {
			return false
		}
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return false
		}
		if n != w {
			return n > w
		}
	}
	return true
}

// logDeadLetters logs what the order flow dead-lettered during the run:
// a step's readers refuse an event they cannot apply, and the operator
// looks there first.
func (s *stack) logDeadLetters(d kit.Deps) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dead, err := d.Ops.DeadLetters(ctx, schemas.OrderFlow.Name())
	if err != nil {
		s.t.Logf("dead letters: %v", err)
		return
	}
	s.t.Logf("%d dead letters of the order flow", len(dead))
	for _, dl := range dead[:min(len(dead), 10)] {
		s.t.Logf("  dead letter: %s by %s: %s", dl.Subject, dl.Consumer, dl.Reason)
	}
}
