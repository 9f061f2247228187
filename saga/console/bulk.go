package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/choreo-go/choreo/internal/httpjson"
	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/ops"
)

// bulkForm is a bulk act as the console's page sends it.
type bulkForm struct {
	Action  string   `json:"action"`
	Flow    string   `json:"flow"`
	Version int      `json:"version"`
	Status  []string `json:"status"`
	Step    string   `json:"step"`
	Since   string   `json:"since"` // an age (24h) or a time (RFC 3339); "" for none
	Where   []string `json:"where"`
	Reason  string   `json:"reason"`
	Rate    float64  `json:"rate"`
}

// maxBulkForm bounds a bulk act's request body.
const maxBulkForm = 16 << 10

// readBulk reads a bulk act from the request, answering 400 for a bad one.
func readBulk(w http.ResponseWriter, r *http.Request) (ops.BulkSpec, bool) {
	var f bulkForm
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBulkForm))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		httpjson.Error(w, http.StatusBadRequest, "bulk act: "+err.Error())
		return ops.BulkSpec{}, false
	}
	spec := ops.BulkSpec{Action: ops.BulkAction(f.Action), Reason: f.Reason, Rate: f.Rate,
		Filter: ops.Filter{Flow: f.Flow, Version: f.Version, Step: f.Step}}
	bad := func(format string, args ...any) (ops.BulkSpec, bool) {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf(format, args...))
		return ops.BulkSpec{}, false
	}
	if f.Flow != "" && (len(f.Flow) > 64 || f.Flow[0] == '_' || f.Flow[0] == '-' || !saga.ValidID(f.Flow)) {
		return bad("flow %q: want 1 to 64 letters, digits, _ or - (not first)", f.Flow)
	}
	if f.Step != "" && !saga.ValidID(f.Step) {
		return bad("step %q: want letters, digits, _ or -", f.Step)
	}
	if f.Version < 0 {
		return bad("version %d: want a number from 1 (0: every version)", f.Version)
	}
	known := []saga.Status{saga.StatusScheduled, saga.StatusRunning, saga.StatusCompleted, saga.StatusCompensating, saga.StatusCompensated, saga.StatusCompensationFailed}
	for _, s := range f.Status {
		if s == "" {
			continue
		}
		ok := false
		for _, k := range known {
			ok = ok || string(k) == s
		}
		if !ok {
			return bad("status %q: want one of %v", s, known)
		}
		spec.Filter.Statuses = append(spec.Filter.Statuses, ops.Statuses(saga.Status(s))...)
	}
	if f.Since != "" {
		if d, err := time.ParseDuration(f.Since); err == nil && d > 0 {
			spec.Filter.Since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, f.Since); err == nil {
			spec.Filter.Since = t
		} else {
			return bad("since %q: want an age (24h) or a time (2026-11-27T00:00:00Z)", f.Since)
		}
	}
	for _, c := range f.Where {
		if strings.TrimSpace(c) == "" {
			continue
		}
		cond, err := ops.ParseCond(c)
		if err != nil {
			return bad("where %q: %v", c, err)
		}
		spec.Filter.Where = append(spec.Filter.Where, cond)
	}
	return spec, true
}

// failBulk answers an error of a bulk act: a bad spec is the request's.
func failBulk(w http.ResponseWriter, err error) {
	if errors.Is(err, saga.ErrInvalidOption) {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	failLib(w, err)
}

func (h *handler) bulkPlan(w http.ResponseWriter, r *http.Request) {
	spec, ok := readBulk(w, r)
	if !ok {
		return
	}
	plan, err := h.op.PlanBulk(r.Context(), spec)
	if err != nil {
		failBulk(w, err)
		return
	}
	httpjson.Write(w, http.StatusOK, plan)
}

// bulkStart starts a bulk act and answers its id at once: the act runs on
// in the console's process, past the request, until done or stopped (its
// record's stop, from this page or choreo bulk stop).
func (h *handler) bulkStart(w http.ResponseWriter, r *http.Request) {
	spec, ok := readBulk(w, r)
	if !ok {
		return
	}
	id, wait, err := h.op.StartBulk(context.WithoutCancel(r.Context()), spec, nil)
	if err != nil {
		failBulk(w, err)
		return
	}
	go func() { _, _ = wait() }() // its outcome is in its record
	httpjson.Write(w, http.StatusAccepted, map[string]string{"id": id})
}

func (h *handler) bulkList(w http.ResponseWriter, r *http.Request) {
	acts, err := h.op.BulkActs(r.Context())
	if err != nil {
		failLib(w, err)
		return
	}
	if acts == nil {
		acts = []ops.BulkRecord{}
	}
	pauses, err := h.op.Pauses(r.Context(), "")
	if err != nil {
		failLib(w, err)
		return
	}
	if pauses == nil {
		pauses = []ops.StepPause{}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"acts": acts, "pauses": pauses})
}

func (h *handler) bulkOne(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !saga.ValidID(id) {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("bulk act %q: not an id", id))
		return
	}
	rec, err := h.op.BulkAct(r.Context(), id)
	if err != nil {
		failLib(w, fmt.Errorf("bulk act %s: %w", id, err))
		return
	}
	httpjson.Write(w, http.StatusOK, rec)
}

func (h *handler) bulkStop(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !saga.ValidID(id) {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("bulk act %q: not an id", id))
		return
	}
	if err := h.op.StopBulk(r.Context(), id); err != nil {
		failLib(w, fmt.Errorf("bulk act %s: %w", id, err))
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"id": id, "stop": "asked"})
}
