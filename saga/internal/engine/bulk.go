package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// BulkAction is what a bulk act does to each saga it selects.
type BulkAction string

// Bulk actions.
const (
	BulkCancel BulkAction = "cancel" // Cancel: it compensates
	BulkRetry  BulkAction = "retry"  // RetryCompensation of a parked saga
	BulkReplay BulkAction = "replay" // ReplayDeadLetter of each of its dead letters
	BulkPause  BulkAction = "pause"  // PauseSaga
	BulkResume BulkAction = "resume" // ResumeSaga
)

// DefaultBulkRate is a bulk act's rate when its spec gives none, in sagas
// per second.
const DefaultBulkRate = 200

// BulkSpec is a bulk act: an action over every saga a filter selects, for
// a reason, at a bounded rate.
type BulkSpec struct {
	Action BulkAction `json:"action"`
	Filter Filter     `json:"filter"`
	Reason string     `json:"reason"`
	// Rate bounds the sagas acted on per second (0: DefaultBulkRate).
	Rate float64 `json:"rate,omitempty"`
}

// statuses are the statuses the spec's action applies to, when its filter
// names none.
func (s BulkSpec) statuses() []Status {
	if len(s.Filter.Statuses) > 0 {
		return s.Filter.Statuses
	}
	switch s.Action {
	case BulkCancel, BulkPause, BulkResume:
		return []Status{StatusRunning, StatusScheduled}
	case BulkRetry:
		return []Status{StatusCompensationFailed}
	}
	return nil
}

func (s BulkSpec) check() error {
	switch s.Action {
	case BulkCancel, BulkRetry, BulkReplay, BulkPause, BulkResume:
	default:
		return fmt.Errorf("%w: bulk action %q: want cancel, retry, replay, pause or resume", ErrInvalidOption, s.Action)
	}
	if strings.TrimSpace(s.Reason) == "" {
		return fmt.Errorf("%w: a bulk act needs a reason", ErrInvalidOption)
	}
	if s.Rate < 0 {
		return fmt.Errorf("%w: bulk rate %v", ErrInvalidOption, s.Rate)
	}
	if s.Filter.Flow != "" && !wire.Token(s.Filter.Flow) {
		return fmt.Errorf("%w: bad flow name", ErrInvalidFlow)
	}
	return nil
}

// BulkPlan is a bulk act's dry run: how many sagas it would act on, and
// a sample of them.
type BulkPlan struct {
	Count  int      `json:"count"`
	Sample []*State `json:"sample"`
}

// bulkSample is how many sagas a plan shows.
const bulkSample = 10

// Bulk outcomes of one saga.
const (
	BulkDone    = "done"
	BulkSkipped = "skipped"
	BulkFailed  = "failed"
)

// BulkItem is what a bulk act did to one saga: done, skipped (it did not
// apply: already compensating, not parked...) or failed, with the reason.
type BulkItem struct {
	Flow    string `json:"flow"`
	ID      string `json:"id"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
}

// Bulk act states.
const (
	BulkRunning  = "running"
	BulkFinished = "done"
	BulkStopped  = "stopped"
	BulkAborted  = "failed" // an error stopped it (the broker's)
)

// BulkRecord is a bulk act as listed (BulkActs): its spec, who ran it,
// where it stands and what it did. Items lists the sagas skipped or
// failed (the first maxBulkItems); every saga acted on has the act's id
// in its log.
type BulkRecord struct {
	ID string `json:"id"`
	BulkSpec
	By      string     `json:"by"`
	Started time.Time  `json:"started"`
	Ended   time.Time  `json:"ended,omitzero"`
	State   string     `json:"state"`
	Matched int        `json:"matched"`
	Done    int        `json:"done"`
	Skipped int        `json:"skipped"`
	Failed  int        `json:"failed"`
	Items   []BulkItem `json:"items,omitempty"`
	Error   string     `json:"error,omitempty"`
}

// Handled is how many sagas it went through.
func (r BulkRecord) Handled() int { return r.Done + r.Skipped + r.Failed }

// maxBulkItems bounds the skipped and failed sagas a record lists.
const maxBulkItems = 200

func bulkKey(id string) string     { return "bulk." + id }
func bulkStopKey(id string) string { return "bulk." + id + ".stop" }

// selectSagas lists the sagas spec selects, oldest first.
func (c *Client) selectSagas(ctx context.Context, spec BulkSpec) ([]*State, error) {
	flows := []string{spec.Filter.Flow}
	if spec.Filter.Flow == "" {
		regs, err := c.registered(ctx, "")
		if err != nil {
			return nil, err
		}
		flows = nil
		for _, r := range regs {
			if !slices.Contains(flows, r.flow) {
				flows = append(flows, r.flow)
			}
		}
	}
	var out []*State
	var undeclared error // a condition on an attribute a flow does not declare
	searched := 0
	for _, flow := range flows {
		var sagas []*State
		var err error
		if len(spec.Filter.Where) > 0 {
			// The search index gives the candidates (Find), and Find
			// applies the whole filter.
			f := spec.Filter
			f.Flow, f.Statuses = flow, spec.statuses()
			sagas, err = c.Find(ctx, Named(flow), f)
			if errors.Is(err, ErrInvalidOption) && spec.Filter.Flow == "" {
				undeclared = err // another flow may declare it
				continue
			}
		} else {
			sagas, err = c.List(ctx, Named(flow), spec.statuses()...)
		}
		if err != nil {
			return nil, err
		}
		searched++
		for _, st := range sagas {
			if len(spec.Filter.Where) == 0 && !spec.Filter.Matches(st, nil) {
				continue
			}
			if spec.Action == BulkResume && st.Paused == nil {
				continue
			}
			out = append(out, st)
		}
	}
	if searched == 0 && undeclared != nil {
		return nil, undeclared // no flow declares the attributes
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].StartedAt.Before(out[b].StartedAt) })
	return out, nil
}

// PlanBulk is a bulk act's dry run: it counts the sagas spec selects and
// shows a sample, changing nothing. It returns ErrInvalidOption for a bad
// spec.
func (c *Client) PlanBulk(ctx context.Context, spec BulkSpec) (*BulkPlan, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	sagas, err := c.selectSagas(ctx, spec)
	if err != nil {
		return nil, err
	}
	p := &BulkPlan{Count: len(sagas), Sample: sagas[:min(len(sagas), bulkSample)]}
	return p, nil
}

// newBulkID is a fresh bulk act id: a token that sorts by time.
func newBulkID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "b" + strconv.FormatInt(time.Now().UnixMilli(), 36) + hex.EncodeToString(b[:])
}

// Bulk runs spec's action on every saga it selects, at most spec.Rate a
// second, and records the act in the flow registry (BulkActs) as it goes:
// each saga acted on gets an operator's event with the act's id in its
// log; one the action does not apply to (a saga compensating already, not
// parked...) is skipped with the reason, so that running an act twice acts
// once. progress, if not nil, is called with the record after each saga.
// It stops when ctx ends or StopBulk is called with its id (its record
// then reads stopped, and it returns the record with ErrStopped). It
// returns ErrInvalidOption for a bad spec, or the broker's error.
func (c *Client) Bulk(ctx context.Context, spec BulkSpec, progress func(BulkRecord)) (*BulkRecord, error) {
	_, wait, err := c.StartBulk(ctx, spec, progress)
	if err != nil {
		return nil, err
	}
	return wait()
}

// StartBulk is Bulk in the background: it records the act and returns its
// id at once, and wait, which waits for the act's end and returns what
// Bulk returns. The act runs until done, ctx ends or StopBulk.
func (c *Client) StartBulk(ctx context.Context, spec BulkSpec, progress func(BulkRecord)) (id string, wait func() (*BulkRecord, error), err error) {
	if err := spec.check(); err != nil {
		return "", nil, err
	}
	if spec.Rate == 0 {
		spec.Rate = DefaultBulkRate
	}
	rec := &BulkRecord{ID: newBulkID(), BulkSpec: spec, By: c.who(), Started: time.Now().UTC(), State: BulkRunning}
	if err := c.saveBulk(ctx, rec); err != nil {
		return "", nil, err
	}
	type result struct {
		rec *BulkRecord
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := c.runBulk(ctx, rec, progress)
		done <- result{r, err}
	}()
	var once sync.Once
	var res result
	return rec.ID, func() (*BulkRecord, error) {
		once.Do(func() { res = <-done })
		return res.rec, res.err
	}, nil
}

// runBulk goes through the sagas of the act rec.
func (c *Client) runBulk(ctx context.Context, rec *BulkRecord, progress func(BulkRecord)) (*BulkRecord, error) {
	spec := rec.BulkSpec
	sagas, err := c.selectSagas(ctx, spec)
	if err != nil {
		return c.endBulk(rec, BulkAborted, err)
	}
	rec.Matched = len(sagas)
	if err := c.saveBulk(ctx, rec); err != nil {
		return c.endBulk(rec, BulkAborted, err)
	}
	var mu sync.Mutex
	note := func(st *State, outcome, reason string) {
		mu.Lock()
		defer mu.Unlock()
		switch outcome {
		case BulkDone:
			rec.Done++
		case BulkSkipped:
			rec.Skipped++
		default:
			rec.Failed++
		}
		if outcome != BulkDone && len(rec.Items) < maxBulkItems {
			rec.Items = append(rec.Items, BulkItem{Flow: st.Flow, ID: st.ID, Outcome: outcome, Reason: reason})
		}
		if progress != nil {
			progress(cloneBulk(rec))
		}
	}
	interval := time.Duration(float64(time.Second) / spec.Rate)
	tick := time.NewTicker(max(interval, time.Microsecond))
	defer tick.Stop()
	work := make(chan *State)
	var wg sync.WaitGroup
	for range bulkWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for st := range work {
				outcome, reason := c.bulkOne(ctx, rec.ID, spec, st)
				note(st, outcome, reason)
			}
		}()
	}
	stopped := false
	lastSave := time.Now()
	for _, st := range sagas {
		select {
		case <-tick.C:
		case <-ctx.Done():
			stopped = true
		}
		// A slow act looks for a stop before each saga; a fast one once a
		// second (a read of the registry), when it also saves its record.
		if !stopped && (interval >= 50*time.Millisecond || time.Since(lastSave) > time.Second) {
			lastSave = time.Now()
			if c.bulkStopAsked(ctx, rec.ID) {
				stopped = true
			} else {
				mu.Lock()
				snap := cloneBulk(rec)
				mu.Unlock()
				_ = c.saveBulk(ctx, &snap)
			}
		}
		if stopped {
			break
		}
		work <- st
	}
	close(work)
	wg.Wait()
	if stopped {
		r, _ := c.endBulk(rec, BulkStopped, nil)
		return r, ErrStopped
	}
	return c.endBulk(rec, BulkFinished, nil)
}

// bulkWorkers is how many sagas a bulk act handles at once (within its
// rate).
const bulkWorkers = 4

func cloneBulk(r *BulkRecord) BulkRecord {
	c := *r
	c.Items = slices.Clone(r.Items)
	return c
}

// endBulk records the end of a bulk act, whatever its context.
func (c *Client) endBulk(rec *BulkRecord, state string, cause error) (*BulkRecord, error) {
	rec.State, rec.Ended = state, time.Now().UTC()
	if cause != nil {
		rec.Error = cause.Error()
	}
	ctx, cancel := withTimeout(context.Background())
	defer cancel()
	if err := c.saveBulk(ctx, rec); err != nil && cause == nil {
		cause = err
	}
	return rec, cause
}

func (c *Client) saveBulk(ctx context.Context, rec *BulkRecord) error {
	value, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := c.reg.kv.Put(ctx, bulkKey(rec.ID), value); err != nil {
		return fmt.Errorf("saga: record bulk act %s: %w", rec.ID, err)
	}
	return nil
}

func (c *Client) bulkStopAsked(ctx context.Context, id string) bool {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	_, err := c.reg.kv.Get(ctx, bulkStopKey(id))
	return err == nil
}

// bulkOne acts on one saga: its outcome and why.
func (c *Client) bulkOne(ctx context.Context, bulk string, spec BulkSpec, st *State) (string, string) {
	f := Named(st.Flow)
	var err error
	switch spec.Action {
	case BulkCancel:
		err = c.cancel(ctx, f, st.ID, spec.Reason, bulk)
	case BulkRetry:
		err = c.retryCompensation(ctx, f, st.ID, spec.Reason, bulk)
	case BulkPause:
		err = c.pauseSaga(ctx, f, st.ID, spec.Reason, bulk)
	case BulkResume:
		err = c.resumeSaga(ctx, f, st.ID, spec.Reason, bulk)
	case BulkReplay:
		return c.replaySaga(ctx, bulk, spec.Reason, st)
	}
	switch {
	case err == nil:
		return BulkDone, ""
	case errors.Is(err, ErrNotRunning), errors.Is(err, ErrNotParked), errors.Is(err, ErrNotPaused), errors.Is(err, ErrNotFound):
		return BulkSkipped, strings.TrimPrefix(err.Error(), "saga: ")
	}
	return BulkFailed, err.Error()
}

// replaySaga replays the dead letters of one saga (ReplayDeadLetter) not
// replayed by an earlier act, and notes each in its log.
func (c *Client) replaySaga(ctx context.Context, bulk, reason string, st *State) (string, string) {
	letters, err := c.DeadLetters(ctx, Named(st.Flow))
	if err != nil {
		return BulkFailed, err.Error()
	}
	events, err := c.Timeline(ctx, Named(st.Flow), st.ID)
	if err != nil {
		return BulkFailed, err.Error()
	}
	replayed := map[string]bool{}
	for _, e := range events {
		var a Audit
		if e.Phase == PhaseNoted && json.Unmarshal(e.Data, &a) == nil {
			replayed[strings.SplitN(a.Reason, ":", 2)[0]] = true
		}
	}
	var did, skipped []string
	for _, d := range letters {
		t := strings.Split(d.Subject, ".") // choreo.<kind>.<flow>.<id>...
		if len(t) < 4 || t[2] != st.Flow || t[3] != st.ID {
			continue
		}
		mark := "replayed dead letter " + strconv.FormatUint(d.Sequence, 10)
		if replayed[mark] {
			skipped = append(skipped, mark+" before")
			continue
		}
		what, err := c.ReplayDeadLetter(ctx, d.Sequence)
		if errors.Is(err, ErrNotReplayable) {
			skipped = append(skipped, err.Error())
			continue
		}
		if err != nil {
			return BulkFailed, err.Error()
		}
		a := c.audit(mark+": "+what+" ("+reason+")", bulk)
		if _, err := c.operatorAct(ctx, Named(st.Flow), st.ID, PhaseNoted, a, func(*State, time.Time) error { return nil }); err != nil {
			return BulkFailed, err.Error()
		}
		did = append(did, mark)
	}
	if len(did) == 0 {
		if len(skipped) == 0 {
			return BulkSkipped, "no dead letters"
		}
		return BulkSkipped, strings.Join(skipped, "; ")
	}
	return BulkDone, strings.Join(did, ", ")
}

// BulkActs lists the bulk acts recorded, newest first.
func (c *Client) BulkActs(ctx context.Context) ([]BulkRecord, error) {
	entries, err := c.registryEntries(ctx, "bulk.*")
	if err != nil {
		return nil, err
	}
	var out []BulkRecord
	for _, v := range entries {
		var r BulkRecord
		if json.Unmarshal(v, &r) == nil && r.ID != "" {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Started.After(out[b].Started) })
	return out, nil
}

// BulkAct returns one bulk act's record, or ErrNotFound.
func (c *Client) BulkAct(ctx context.Context, id string) (*BulkRecord, error) {
	if !wire.Token(id) {
		return nil, ErrNotFound
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	e, err := c.reg.kv.Get(ctx, bulkKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var r BulkRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, fmt.Errorf("saga: bulk act %s: %w", id, err)
	}
	return &r, nil
}

// StopBulk asks a running bulk act to stop, wherever it runs: it stops
// within a second, after the sagas in hand. It returns ErrNotFound for
// an unknown id.
func (c *Client) StopBulk(ctx context.Context, id string) error {
	r, err := c.BulkAct(ctx, id)
	if err != nil {
		return err
	}
	if r.State != BulkRunning {
		return nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := c.reg.kv.Put(ctx, bulkStopKey(id), []byte(c.who())); err != nil {
		return fmt.Errorf("saga: stop bulk act %s: %w", id, err)
	}
	return nil
}
