package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/choreo-go/choreo/internal/httpjson"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/ops"
)

//go:embed web
var webFiles embed.FS

// ActionHeader must be on every action (POST) request, with any value: a
// page on another site can send it only after a CORS preflight, which the
// console never grants. The console's own script sends it.
const ActionHeader = "X-Choreo-Console"

// Option configures Handler.
type Option func(*options)

type options struct {
	title string
	hosts []string
	cache time.Duration
	token string
}

// WithToken makes the console answer only a browser that brings token:
// open it once as .../?token=TOKEN and it keeps the token in a cookie
// (HttpOnly, SameSite=Strict) for the pages and calls that follow; a
// script may send "Authorization: Bearer TOKEN" instead. Without it,
// anyone who can reach the console's address acts with its identity.
// NewToken makes one.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// NewToken returns a random token for WithToken: 32 hex digits.
func NewToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// WithTitle names what the console looks at ("shop", "production") in its
// header and the browser's tab.
func WithTitle(title string) Option { return func(o *options) { o.title = title } }

// AllowHosts adds host names (or name:port) a browser may reach the
// console by, besides localhost and IP addresses: any other Host is
// refused (421), so that a site whose name is made to resolve to the
// console's address (DNS rebinding) cannot read or drive it.
func AllowHosts(hosts ...string) Option {
	return func(o *options) {
		for _, h := range hosts {
			if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
				o.hosts = append(o.hosts, h)
			}
		}
	}
}

// previewBytes is how much of a dead letter's payload the list shows.
const previewBytes = 240

// maxDeadLetters is how many dead letters the list shows, the newest: each
// is read whole from the broker, up to its largest message.
const maxDeadLetters = 200

// Handler returns the operator console over c (queries) and op (acts): an HTML page with its
// script and style, and JSON endpoints under api/. It binds nothing; mount
// it where you like, under a path ending in "/" with the prefix stripped:
//
//	mux.Handle("/console/", http.StripPrefix("/console", console.Handler(c, op)))
//
// Every act (a replay, a retry) is done with c's identity, so serve it
// only to operators: on a loopback address, or behind what authenticates
// them.
func Handler(c *saga.Client, op *ops.Client, opts ...Option) http.Handler {
	o := options{title: "choreo", cache: time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	h := &handler{c: c, op: op, o: o, counts: map[string]cached{}}
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFiles, "web")
	files := http.FileServerFS(static)
	mux.HandleFunc("GET /{$}", h.index)
	mux.Handle("GET /console.js", files)
	mux.Handle("GET /console.css", files)
	mux.Handle("GET /waterfall.js", files)
	mux.HandleFunc("GET /api/flows", h.flows)
	mux.HandleFunc("GET /api/flows/{flow}/{version}/counts", h.stepCounts)
	mux.HandleFunc("GET /api/deadletters", h.deadLetters)
	mux.HandleFunc("POST /api/deadletters/{seq}/replay", h.replay)
	mux.HandleFunc("GET /api/parked", h.parked)
	mux.HandleFunc("GET /api/scheduled", h.scheduledList)
	mux.HandleFunc("GET /api/search", h.search)
	mux.HandleFunc("GET /api/sagas/{flow}/{id}", h.saga)
	mux.HandleFunc("POST /api/sagas/{flow}/{id}/retry", h.retry)
	mux.HandleFunc("GET /api/bulk", h.bulkList) // bulk.go
	mux.HandleFunc("POST /api/bulk/plan", h.bulkPlan)
	mux.HandleFunc("POST /api/bulk", h.bulkStart)
	mux.HandleFunc("GET /api/bulk/{id}", h.bulkOne)
	mux.HandleFunc("POST /api/bulk/{id}/stop", h.bulkStop)
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpjson.Error(w, http.StatusForbidden, "cross-site request refused: operator actions come from the console's own page")
	}))
	return h.front(cop.Handler(mux))
}

type handler struct {
	c  *saga.Client
	op *ops.Client
	o  options

	mu     sync.Mutex
	counts map[string]cached // by flow/version: polled by every open page
}

// maxCached bounds the counts cache: its keys come from request paths.
const maxCached = 256

type cached struct {
	at     time.Time
	counts *ops.FlowCounts
}

// securityHeaders go on every answer: the page loads only its own script
// and style, nothing may frame it, sniff a type or carry a referrer away.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options":       "nosniff",
	"X-Frame-Options":              "DENY",
	"Referrer-Policy":              "no-referrer",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
	"Cache-Control":                "no-store",
}

// front checks what every request must be before the routes: a Host the
// console answers to (DNS rebinding), an API request not marked as from
// another site (Sec-Fetch-Site), and on an act (any method but GET and
// HEAD) the ActionHeader, which no other site's page can send without
// a preflight. The cross-origin protection (Sec-Fetch-Site, Origin) then
// refuses what a browser says comes from elsewhere.
func (h *handler) front(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		if !h.hostAllowed(r.Host) {
			httpjson.Error(w, http.StatusMisdirectedRequest, fmt.Sprintf("host %q: the console answers to localhost and IP addresses (see AllowHosts)", r.Host))
			return
		}
		if !h.authorized(w, r) {
			httpjson.Error(w, http.StatusUnauthorized, "this console needs its token: open the address it printed at start (…/?token=…)")
			return
		}
		// Another site cannot read the API, but its <img> could still make
		// the console scan the broker as often as it likes.
		if site := r.Header.Get("Sec-Fetch-Site"); (site == "cross-site" || site == "same-site") && strings.HasPrefix(r.URL.Path, "/api/") {
			httpjson.Error(w, http.StatusForbidden, "cross-site request refused: the API answers the console's own page")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Header.Get(ActionHeader) == "" {
			httpjson.Error(w, http.StatusForbidden, "missing header "+ActionHeader+": operator actions come from the console's own page")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized reports whether r brings the console's token (any request,
// when it has none): in the query, which also sets the cookie; in the
// cookie; or as a bearer token.
func (h *handler) authorized(w http.ResponseWriter, r *http.Request) bool {
	if h.o.token == "" {
		return true
	}
	same := func(got string) bool { return subtle.ConstantTimeCompare([]byte(got), []byte(h.o.token)) == 1 }
	// The cookie's name is the token's own, so that consoles on one host
	// (whose cookies a browser shares across ports) keep theirs apart.
	sum := sha256.Sum256([]byte(h.o.token))
	name := "choreo_console_" + hex.EncodeToString(sum[:4])
	if t := r.URL.Query().Get("token"); t != "" && same(t) {
		http.SetCookie(w, &http.Cookie{Name: name, Value: h.o.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		return true
	}
	if c, err := r.Cookie(name); err == nil && same(c.Value) {
		return true
	}
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && same(b) {
		return true
	}
	return false
}

func (h *handler) hostAllowed(host string) bool {
	host = strings.ToLower(host)
	name := host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		name = hn
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if name == "localhost" || net.ParseIP(name) != nil {
		return true
	}
	return slices.Contains(h.o.hosts, host) || slices.Contains(h.o.hosts, name)
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	page, err := webFiles.ReadFile("web/index.html")
	if err != nil {
		httpjson.Error(w, http.StatusInternalServerError, err.Error())
		return
	}
	// The title is the only text put in the page; escaped as HTML.
	title := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(h.o.title)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(strings.ReplaceAll(string(page), "{{title}}", title)))
}

// failLib answers a library error: what it says, with the status its kind
// calls for.
func failLib(w http.ResponseWriter, err error) {
	status := http.StatusBadGateway // the broker did not answer as it should
	switch {
	case errors.Is(err, saga.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ops.ErrNotReplayable), errors.Is(err, ops.ErrNotParked):
		status = http.StatusConflict
	case errors.Is(err, saga.ErrInvalidFlow):
		status = http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	}
	httpjson.Error(w, status, err.Error())
}

// flowName reads a flow name from the path: 1 to 64 of [A-Za-z0-9_-], not
// starting with _ or -.
func flowName(w http.ResponseWriter, r *http.Request) (string, bool) {
	f := r.PathValue("flow")
	if f == "" || len(f) > 64 || f[0] == '_' || f[0] == '-' || !saga.ValidID(f) {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("flow %q: want 1 to 64 letters, digits, _ or - (not first)", f))
		return "", false
	}
	return f, true
}

// sagaRef reads a saga's flow and id from the path, answering 400 when
// either is malformed.
func sagaRef(w http.ResponseWriter, r *http.Request) (flow, id string, ok bool) {
	if flow, ok = flowName(w, r); !ok {
		return "", "", false
	}
	id = r.PathValue("id")
	if !saga.ValidID(id) {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("saga id %q: want 1 to 128 letters, digits, _ or -", id))
		return "", "", false
	}
	return flow, id, true
}

// flowVersion is a flow version as the console lists it: its definition,
// its status and its sagas' totals, and whether the console opens on it.
type flowVersion struct {
	describe.Flow
	Deadline string `json:"deadline,omitempty"`
	// Status is the version's (active, draining, drained, retired); Sagas
	// its sagas by status, InFlight those not ended.
	Status   ops.VersionStatus   `json:"status,omitempty"`
	Sagas    map[saga.Status]int `json:"sagas"`
	InFlight int                 `json:"in_flight"`
	// Open marks the version of its flow the console opens on (openOn).
	Open bool `json:"open,omitempty"`
}

// openOn picks the version of a flow the console opens on, from its
// versions oldest first: the newest with sagas in flight, else the newest.
func openOn(vs []flowVersion) int {
	if len(vs) == 0 {
		return -1
	}
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].InFlight > 0 {
			return i
		}
	}
	return len(vs) - 1
}

func (h *handler) flows(w http.ResponseWriter, r *http.Request) {
	flows, err := h.op.Flows(r.Context())
	if err != nil {
		failLib(w, err)
		return
	}
	out := make([]flowVersion, 0, len(flows))
	for _, f := range flows {
		v := flowVersion{Flow: f, Sagas: map[saga.Status]int{}}
		if f.Deadline > 0 {
			v.Deadline = f.Deadline.String()
		}
		out = append(out, v)
	}
	// Every version's totals, a flow at a time (flows come by name, then
	// version).
	for start := 0; start < len(out); {
		end := start
		for end < len(out) && out[end].Name == out[start].Name {
			end++
		}
		reports, err := h.op.Versions(r.Context(), out[start].Name)
		if err != nil {
			failLib(w, err)
			return
		}
		for i := start; i < end; i++ {
			for _, rep := range reports {
				if rep.Version == out[i].Version {
					out[i].Status, out[i].Sagas, out[i].InFlight = rep.Status, rep.Sagas, rep.Left()
				}
			}
		}
		if i := openOn(out[start:end]); i >= 0 {
			out[start+i].Open = true
		}
		start = end
	}
	httpjson.Write(w, http.StatusOK, out)
}

func (h *handler) stepCounts(w http.ResponseWriter, r *http.Request) {
	flow, ok := flowName(w, r)
	if !ok {
		return
	}
	vs := r.PathValue("version")
	v, err := strconv.Atoi(strings.TrimPrefix(vs, "v"))
	if err != nil || v < 1 || !strings.HasPrefix(vs, "v") {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("version %q: want v1, v2, …", vs))
		return
	}
	key := flow + "/" + strconv.Itoa(v)
	h.mu.Lock()
	c, ok := h.counts[key]
	h.mu.Unlock()
	if !ok || time.Since(c.at) > h.o.cache {
		counts, err := h.op.StepCounts(r.Context(), flow, v)
		if err != nil {
			failLib(w, err)
			return
		}
		c = cached{at: time.Now(), counts: counts}
		h.mu.Lock()
		if len(h.counts) >= maxCached {
			for k, old := range h.counts {
				if time.Since(old.at) > h.o.cache {
					delete(h.counts, k)
				}
			}
			if len(h.counts) >= maxCached {
				clear(h.counts)
			}
		}
		h.counts[key] = c
		h.mu.Unlock()
	}
	httpjson.Write(w, http.StatusOK, c.counts)
}

// deadLetter is a dead letter as the list shows it: its payload cut short
// and made valid UTF-8.
type deadLetter struct {
	Sequence uint64    `json:"sequence"`
	Subject  string    `json:"subject"`
	Reason   string    `json:"reason"`
	Consumer string    `json:"consumer"`
	Writer   string    `json:"writer"`
	Time     time.Time `json:"time,omitzero"`
	Size     int       `json:"size"`
	Preview  string    `json:"preview"`
}

func (h *handler) deadLetters(w http.ResponseWriter, r *http.Request) {
	// Only the newest, and only the start of each payload: any participant
	// may dead-letter as many and as big messages as the broker takes.
	dls, total, err := h.op.LatestDeadLetters(r.Context(), maxDeadLetters, previewBytes+1)
	if err != nil {
		failLib(w, err)
		return
	}
	out := make([]deadLetter, 0, len(dls))
	for i := len(dls) - 1; i >= 0; i-- { // newest first
		d := dls[i]
		p := preview(d.Data, previewBytes)
		if d.Encrypted {
			p = "encrypted" // sealed with a key the console's client was not given
		}
		out = append(out, deadLetter{Sequence: d.Sequence, Subject: d.Subject, Reason: d.Reason, Consumer: d.Consumer, Writer: d.Writer,
			Time: d.Time, Size: d.Size, Preview: p})
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"total": total, "dead_letters": out})
}

// preview returns the start of a payload as text: at most n bytes, cut
// on a character, invalid UTF-8 and control characters shown as �, "…"
// when cut.
func preview(data []byte, n int) string {
	cut := len(data) > n
	if cut {
		data = data[:n]
		for len(data) > 0 && !utf8.Valid(data) && len(data) > n-utf8.UTFMax {
			data = data[:len(data)-1]
		}
	}
	s := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return unicode.ReplacementChar
	}, strings.ToValidUTF8(string(data), "\uFFFD"))
	if cut {
		s += "…"
	}
	return s
}

func (h *handler) replay(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("dead letter %q: want its sequence, a number from 1", r.PathValue("seq")))
		return
	}
	what, err := h.op.ReplayDeadLetter(r.Context(), seq)
	if err != nil {
		failLib(w, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"sequence": seq, "replayed": what})
}

// parkedSaga is a saga parked as compensation_failed, with the steps whose
// compensation ran out of retries.
type parkedSaga struct {
	Flow      string       `json:"flow"`
	Version   int          `json:"version"`
	ID        string       `json:"id"`
	Reason    string       `json:"reason,omitempty"`
	Epoch     int          `json:"epoch,omitempty"`
	StartedAt time.Time    `json:"started_at"`
	UpdatedAt time.Time    `json:"updated_at"`
	Failed    []parkedStep `json:"failed"`
	TraceID   string       `json:"trace_id,omitempty"`
}

type parkedStep struct {
	Step     string `json:"step"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
}

// flowNames lists the names of the registered flows.
func (h *handler) flowNames(ctx context.Context) ([]string, error) {
	flows, err := h.op.Flows(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range flows {
		if !slices.Contains(names, f.Name) {
			names = append(names, f.Name)
		}
	}
	return names, nil
}

// scheduledSaga is a saga started for later that has not begun.
type scheduledSaga struct {
	Flow      string    `json:"flow"`
	Version   int       `json:"version"`
	ID        string    `json:"id"`
	Scheduled time.Time `json:"scheduled"`  // when it begins
	StartedAt time.Time `json:"started_at"` // when it was recorded
	TraceID   string    `json:"trace_id,omitempty"`
}

// scheduledList lists the scheduled sagas of every registered flow, the next
// to begin first: a flow no runner registered is not looked at.
func (h *handler) scheduledList(w http.ResponseWriter, r *http.Request) {
	names, err := h.flowNames(r.Context())
	if err != nil {
		failLib(w, err)
		return
	}
	out := []scheduledSaga{}
	for _, n := range names {
		list, err := h.c.List(r.Context(), saga.Named(n), saga.StatusScheduled)
		if err != nil {
			failLib(w, err)
			return
		}
		for _, st := range list {
			out = append(out, scheduledSaga{Flow: st.Flow, Version: st.Version, ID: st.ID, Scheduled: st.Scheduled, StartedAt: st.StartedAt, TraceID: st.TraceID})
		}
	}
	slices.SortStableFunc(out, func(a, b scheduledSaga) int { return a.Scheduled.Compare(b.Scheduled) })
	httpjson.Write(w, http.StatusOK, out)
}

// parked lists the parked sagas of every registered flow: a flow no
// runner registered is not looked at.
func (h *handler) parked(w http.ResponseWriter, r *http.Request) {
	names, err := h.flowNames(r.Context())
	if err != nil {
		failLib(w, err)
		return
	}
	out := []parkedSaga{}
	for _, n := range names {
		list, err := h.c.List(r.Context(), saga.Named(n), saga.StatusCompensationFailed)
		if err != nil {
			failLib(w, err)
			return
		}
		for _, st := range list {
			p := parkedSaga{Flow: st.Flow, Version: st.Version, ID: st.ID, Reason: st.Reason, Epoch: st.Epoch,
				StartedAt: st.StartedAt, UpdatedAt: st.UpdatedAt, TraceID: st.TraceID, Failed: []parkedStep{}}
			for _, s := range st.Steps {
				if s.Status == saga.StepCompensationFailed {
					p.Failed = append(p.Failed, parkedStep{Step: s.Name, Attempts: s.CompensationAttempts, Error: s.CompensationError})
				}
			}
			out = append(out, p)
		}
	}
	httpjson.Write(w, http.StatusOK, out)
}

// foundSaga is a saga the search box found.
type foundSaga struct {
	Flow      string            `json:"flow"`
	Version   int               `json:"version"`
	ID        string            `json:"id"`
	Status    saga.Status       `json:"status"`
	StartedAt time.Time         `json:"started_at"`
	Attrs     map[string]string `json:"attrs,omitempty"`
}

// searchLimit is how many sagas a search shows, the newest first.
const searchLimit = 200

// search finds sagas by their search attributes: q holds conditions
// separated by spaces (customer=c-123 total>100), all of which must hold;
// flow, when given, names the flow, else every registered flow that has
// the attributes is searched; status keeps one status. A bad condition is
// a 400 that says why.
func (h *handler) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var where []saga.Cond
	for _, f := range strings.Fields(q.Get("q")) {
		c, err := saga.ParseCond(f)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		where = append(where, c)
	}
	if len(where) == 0 {
		httpjson.Error(w, http.StatusBadRequest, "give one condition at least: customer=c-123 total>100")
		return
	}
	var filter saga.Filter
	filter.Where = where
	if st := saga.Status(q.Get("status")); st != "" {
		known := []saga.Status{saga.StatusScheduled, saga.StatusRunning, saga.StatusCompleted, saga.StatusCompensating, saga.StatusCompensated, saga.StatusCompensationFailed}
		if !slices.Contains(known, st) {
			httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("status %q: want one of %v", st, known))
			return
		}
		filter.Statuses = []saga.Status{st}
	}
	flows, err := h.op.Flows(r.Context())
	if err != nil {
		failLib(w, err)
		return
	}
	var names []string
	if f := q.Get("flow"); f != "" {
		names = []string{f}
	} else {
		has := map[string]map[string]bool{}
		for _, f := range flows {
			if has[f.Name] == nil {
				has[f.Name] = map[string]bool{}
			}
			for _, a := range f.Attrs {
				has[f.Name][a.Name] = true
			}
		}
		for name, attrs := range has {
			if !slices.ContainsFunc(where, func(c saga.Cond) bool { return !attrs[c.Attr] }) {
				names = append(names, name)
			}
		}
		if len(names) == 0 {
			httpjson.Error(w, http.StatusBadRequest, "no registered flow has every attribute these conditions name")
			return
		}
	}
	out := []foundSaga{}
	for _, n := range names {
		list, err := h.c.Find(r.Context(), saga.Named(n), filter)
		if errors.Is(err, saga.ErrInvalidOption) {
			httpjson.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		if err != nil {
			failLib(w, err)
			return
		}
		for _, st := range list {
			out = append(out, foundSaga{Flow: st.Flow, Version: st.Version, ID: st.ID, Status: st.Status, StartedAt: st.StartedAt, Attrs: st.Attrs})
		}
	}
	slices.SortStableFunc(out, func(a, b foundSaga) int { return b.StartedAt.Compare(a.StartedAt) })
	total := len(out)
	if len(out) > searchLimit {
		out = out[:searchLimit]
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"total": total, "sagas": out})
}

// event is one entry of a saga's timeline as the detail page shows it.
type event struct {
	Sequence uint64    `json:"sequence"`
	Time     time.Time `json:"time"`
	Step     string    `json:"step"`
	Phase    string    `json:"phase"`
	Type     string    `json:"type,omitempty"`
	Status   string    `json:"status"`         // the saga's, after the event
	Note     string    `json:"note,omitempty"` // the step's error, or the saga's reason
}

func (h *handler) saga(w http.ResponseWriter, r *http.Request) {
	flow, id, ok := sagaRef(w, r)
	if !ok {
		return
	}
	f := saga.Named(flow)
	st, err := h.c.Get(r.Context(), f, id)
	if err != nil {
		failLib(w, fmt.Errorf("saga %s/%s: %w", flow, id, err))
		return
	}
	tl, err := h.c.Timeline(r.Context(), f, id)
	if err != nil {
		failLib(w, fmt.Errorf("saga %s/%s: %w", flow, id, err))
		return
	}
	events := make([]event, 0, len(tl))
	for _, e := range tl {
		ev := event{Sequence: e.Sequence, Time: e.Time, Step: e.Step, Phase: string(e.Phase), Type: e.Type}
		if e.State != nil {
			ev.Status = string(e.State.Status)
			if s := e.State.Step(e.Step); s != nil {
				switch e.Phase {
				case saga.PhaseFailed, saga.PhaseRetry, saga.PhaseTimedOut, saga.PhaseAbandoned:
					ev.Note = s.Error
				case saga.PhaseCompensationRetry, saga.PhaseParked:
					ev.Note = s.CompensationError
				}
			} else if e.Phase == saga.PhaseCancelled || e.Phase == saga.PhaseDeadline {
				ev.Note = e.State.Reason
			} else if e.Phase == saga.PhaseStart && e.State.Status == saga.StatusScheduled {
				ev.Note = "scheduled to begin at " + e.State.Scheduled.Format(time.RFC3339)
			}
		}
		events = append(events, ev)
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"state": st, "timeline": events,
		"waterfall": drawWaterfall(tl, h.flowDef(r.Context(), st.Flow, st.Version), time.Now())})
}

func (h *handler) retry(w http.ResponseWriter, r *http.Request) {
	flow, id, ok := sagaRef(w, r)
	if !ok {
		return
	}
	if err := h.op.RetryCompensation(r.Context(), flow, id); err != nil {
		failLib(w, fmt.Errorf("saga %s/%s: %w", flow, id, err))
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"flow": flow, "id": id, "status": string(saga.StatusCompensating),
		"retried": fmt.Sprintf("saga %s/%s compensates again (its failed compensations retried)", flow, id)})
}
