package kit

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/schemas"
)

// OrderVersionsEnv names the order flow versions a process serves, as a
// comma-separated list ("1", "1,2", "2", "2,3"...); unset, it serves every version
// the shop defines (schemas.OrderFlows) and starts orders on the newest.
// It is the knob of a rolling upgrade: old instances run "1", then every
// instance "1,2", then "2" once version 1's sagas have drained (see
// saga.Client.Retire).
const OrderVersionsEnv = "CHOREO_ORDER_VERSIONS"

// orderVersions reads OrderVersionsEnv: the runner option that limits the
// order flow's versions, or none when it is unset.
func orderVersions() ([]saga.RunnerOption, error) {
	raw := strings.TrimSpace(os.Getenv(OrderVersionsEnv))
	if raw == "" {
		return nil, nil
	}
	known := map[int]bool{}
	for _, f := range []*saga.Flow[schemas.OrderPlaced]{schemas.OrderFlow, schemas.OrderFlowV2, schemas.OrderFlowV3} {
		known[f.Version()] = true
	}
	var vs []int
	for _, part := range strings.Split(raw, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || !known[v] {
			return nil, fmt.Errorf("%s=%q: want a comma-separated list of the order flow's versions (1, 2, 3)", OrderVersionsEnv, raw)
		}
		vs = append(vs, v)
	}
	return []saga.RunnerOption{saga.ServeVersions(schemas.OrderFlow.Name(), vs...)}, nil
}
