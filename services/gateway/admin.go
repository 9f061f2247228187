package gateway

import (
	"net/http"
	"time"

	"github.com/choreo-go/choreo/internal/httpjson"
)

// RebuildHandler serves POST /admin/rebuild on an admin listener (never
// the public one): it throws the read model away, replays the event
// stream into a new one, and answers once that one serves, with how many
// orders it holds and how long the replay took. Only one rebuild runs at
// a time; a second request waits for the first.
//
//	curl -X POST http://127.0.0.1:9090/admin/rebuild
func (s *Service) RebuildHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		if err := s.Rebuild(r.Context()); err != nil {
			s.d.Logger.Error("gateway: read model rebuild failed", "err", err)
			httpjson.Error(w, http.StatusInternalServerError, "rebuild: "+err.Error())
			return
		}
		took := time.Since(began)
		st := s.rm.Load().Stats()
		s.d.Logger.Info("gateway: read model rebuilt", "orders", st.Orders, "customers", st.Customers, "took", took)
		httpjson.Write(w, http.StatusOK, map[string]any{"status": "rebuilt", "orders": st.Orders, "customers": st.Customers,
			"took_ms": took.Milliseconds()})
	})
}
