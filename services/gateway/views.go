package gateway

import (
	"context"
	"net/url"
	"slices"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/schemas"
)

// OrderView is an order as the API shows it.
type OrderView struct {
	OrderRow
	Saga *SagaView `json:"saga"`
	// Rev never decreases over an order's life: a client that receives
	// views out of order (a push overtaking a GET) keeps the highest.
	Rev int `json:"rev"`
}

// SagaView is an order's saga as the API shows it.
type SagaView struct {
	Version   int         `json:"version"` // the order flow version it runs on
	Status    saga.Status `json:"status"`
	Reason    string      `json:"reason,omitempty"`
	StartedAt time.Time   `json:"started_at"`
	EndedAt   *time.Time  `json:"ended_at,omitempty"`
	Steps     []StepView  `json:"steps"`
	TraceID   string      `json:"trace_id,omitempty"` // its OpenTelemetry trace, when traced
	// Console is the saga's page in the operator console (its waterfall),
	// when the gateway knows the console's address (WithConsoleURL).
	Console string `json:"console,omitempty"`
}

// StepView is a saga step as the API shows it.
type StepView struct {
	Name     string          `json:"name"`
	Service  string          `json:"service"` // the step's owner
	Position int             `json:"position"`
	Status   saga.StepStatus `json:"status"`
	// Activity, of a running step in the view of one order: "working"
	// once a runner of its service has taken it (its action is under
	// way), "waiting" while none has (the service is stopped, or busy with
	// the steps before it), with WaitingMS, how long since it was
	// triggered (StartedAt). From the saga's log and the broker, never
	// guessed: empty when the broker could not say.
	Activity  string `json:"activity,omitempty"`
	WaitingMS int64  `json:"waiting_ms,omitempty"`
	// WaitingOn and WaitUntil, of a step completed later that waits
	// (status "waiting"): whom it waits on ("customer": the order's
	// payment waits for the customer's confirmation; "carrier") and when
	// the wait times out.
	WaitingOn string     `json:"waiting_on,omitempty"`
	WaitUntil *time.Time `json:"wait_until,omitempty"`
	Attempts  int        `json:"attempts"`
	Error     string     `json:"error"`
	// CompensationError is why the step's compensation failed, apart from
	// its action's Error.
	CompensationError    string     `json:"compensation_error,omitempty"`
	StartedAt            *time.Time `json:"started_at"`
	EndedAt              *time.Time `json:"ended_at"`
	CompensationAttempts int        `json:"compensation_attempts,omitempty"`
	CompensatedAt        *time.Time `json:"compensated_at,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// owners are the services that own the order flow's steps, of every
// version.
var owners = func() map[string]string {
	m := map[string]string{}
	for _, si := range slices.Concat(schemas.OrderFlow.Describe().Steps, schemas.OrderFlowV2.Describe().Steps, schemas.OrderFlowV3.Describe().Steps, schemas.OrderFlowV4.Describe().Steps) {
		m[si.Name] = si.Owner // versions agree on the steps they share
	}
	return m
}()

func (s *Service) sagaView(st *saga.State) *SagaView {
	v := &SagaView{Version: st.Version, Status: st.Status, Reason: st.Reason, StartedAt: st.StartedAt, EndedAt: timePtr(st.EndedAt), TraceID: st.TraceID}
	if s.opts.consoleURL != "" {
		v.Console = s.opts.consoleURL + "#saga/" + url.PathEscape(st.Flow) + "/" + url.PathEscape(st.ID)
	}
	for _, ss := range st.Steps {
		v.Steps = append(v.Steps, StepView{Name: ss.Name, Service: owners[ss.Name], Position: ss.Position, Status: ss.Status, Attempts: ss.Attempts, Error: ss.Error, CompensationError: ss.CompensationError,
			StartedAt: timePtr(ss.StartedAt), EndedAt: timePtr(ss.EndedAt), CompensationAttempts: ss.CompensationAttempts, CompensatedAt: timePtr(ss.CompensatedAt)})
		if ss.Status == saga.StepWaiting {
			sv := &v.Steps[len(v.Steps)-1]
			sv.WaitingOn, sv.WaitUntil = ss.WaitingOn, timePtr(ss.WaitUntil)
		}
	}
	return v
}

// orderView joins the read model's order with its saga.
func (s *Service) orderView(ctx context.Context, id string) (OrderView, bool) {
	row, ok := s.rm.Load().Order(id)
	st, err := s.d.Sagas.Get(ctx, schemas.OrderFlow, id)
	if !ok && err != nil {
		return OrderView{}, false
	}
	if !ok {
		row = OrderRow{ID: id, Status: "pending"}
	}
	v := OrderView{OrderRow: row}
	if err == nil {
		v.Saga = s.sagaView(st)
		v.Rev = 2 * st.Events
		s.activity(st, v.Saga)
	}
	if row.Status != "pending" { // an order settles once, after its saga ends
		v.Rev++
	}
	return v, true
}

// activity tells the running steps of a saga that a service is working on
// from those that wait for one (StepView.Activity), as Get found them.
func (s *Service) activity(st *saga.State, v *SagaView) {
	now := time.Now()
	for i, ss := range st.Steps {
		if ss.Status != saga.StepRunning {
			continue
		}
		sv := &v.Steps[i]
		switch {
		case ss.Taken:
			sv.Activity = "working"
		case ss.Unserved || ss.Waiting != "":
			sv.Activity, sv.WaitingMS = "waiting", max(0, now.Sub(ss.StartedAt).Milliseconds())
		}
	}
}
