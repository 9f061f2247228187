package compose_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// promServices are the compose services Prometheus must scrape, with how
// many containers each runs (docker-compose.yml's scale).
var promServices = map[string]int{"customer": 1, "order": 1, "payment": 2, "inventory": 2, "billing": 1,
	"shipping": 1, "carrier": 1, "notification": 1, "gateway": 1}

// checkPrometheus asks the stack's Prometheus, through its HTTP API on
// 127.0.0.1, until every container of every service is a target that is
// up, and the orders the load placed are in its figures.
func (s *stack) checkPrometheus(bound time.Duration) {
	s.t.Helper()
	base := fmt.Sprintf("http://127.0.0.1:%d", s.promPort)
	deadline := time.Now().Add(bound)
	var why string
	for {
		why = s.promTargets(base)
		if why == "" {
			why = s.promStarted(base)
		}
		if why == "" {
			s.t.Logf("prometheus: every service's %d containers are targets up; the orders are counted", 11)
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("prometheus after %s: %s", bound, why)
			return
		}
		time.Sleep(2 * time.Second) // polling prometheus until the bound
	}
}

// promTargets says what is wrong with Prometheus's targets ("" when
// every container of promServices is one, up).
func (s *stack) promTargets(base string) string {
	var r struct {
		Data struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := promGet(base+"/api/v1/targets?state=active", &r); err != nil {
		return err.Error()
	}
	up := map[string]int{}
	var down []string
	for _, t := range r.Data.ActiveTargets {
		if t.Labels["job"] != "choreo" {
			continue
		}
		if t.Health != "up" {
			down = append(down, fmt.Sprintf("%s %s %s: %s", t.Labels["service"], t.Labels["instance"], t.Health, t.LastError))
			continue
		}
		up[t.Labels["service"]]++
	}
	var missing []string
	for svc, n := range promServices {
		if up[svc] != n {
			missing = append(missing, fmt.Sprintf("%s: %d of %d up", svc, up[svc], n))
		}
	}
	if len(missing) == 0 && len(down) == 0 {
		return ""
	}
	slices.Sort(missing)
	return "targets: " + strings.Join(append(missing, down...), "; ")
}

// promStarted says what is wrong with the sagas started that Prometheus
// counts: the order service's starts of orders ("" when some are).
func (s *stack) promStarted(base string) string {
	var r struct {
		Data struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	q := `sum(choreo_sagas_started_total{flow="order",service="order"})`
	if err := promGet(base+"/api/v1/query?query="+url.QueryEscape(q), &r); err != nil {
		return err.Error()
	}
	if len(r.Data.Result) != 1 || len(r.Data.Result[0].Value) != 2 || r.Data.Result[0].Value[1] == "0" {
		return fmt.Sprintf("%s: %+v, want the orders placed", q, r.Data.Result)
	}
	return ""
}

func promGet(u string, into any) error {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}
