package kit

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/schemas"
)

// OrderVersionsEnv names the order flow versions a process serves, as a
// comma-separated list ("1", "1,2", "2", "2,3", "3,4"...), and so the one it starts orders
// on: the newest listed (OrderFlow); unset, it serves every version the
// shop defines (schemas.OrderFlows) and starts orders on the newest. It is
// the knob of a rolling upgrade: old instances run "1" (and start version
// 1), then every instance "1,2" (starting version 2), then "2" once
// version 1's sagas have drained (see ops.Client.Retire).
const OrderVersionsEnv = "CHOREO_ORDER_VERSIONS"

// OrderFlow is the order flow version this process starts orders on: the
// newest that OrderVersionsEnv lists, or the newest the shop defines when
// it is unset. saga.Start starts exactly the version it is given, so the
// build (its setting) decides, never what else the client knows.
func OrderFlow() (*saga.Flow[schemas.OrderPlaced], error) {
	vs, err := orderVersionList()
	if err != nil {
		return nil, err
	}
	var newest *saga.Flow[schemas.OrderPlaced]
	for _, f := range orderFlows {
		if len(vs) == 0 || slices.Contains(vs, f.Version()) {
			newest = f
		}
	}
	return newest, nil
}

// orderFlows are the versions of the order flow the shop defines, oldest
// first.
var orderFlows = []*saga.Flow[schemas.OrderPlaced]{schemas.OrderFlow, schemas.OrderFlowV2, schemas.OrderFlowV3, schemas.OrderFlowV4}

// orderVersions reads OrderVersionsEnv: the runner option that limits the
// order flow's versions, or none when it is unset.
func orderVersions() ([]saga.RunnerOption, error) {
	vs, err := orderVersionList()
	if err != nil || len(vs) == 0 {
		return nil, err
	}
	return []saga.RunnerOption{saga.ServeVersions(schemas.OrderFlow.Name(), vs...)}, nil
}

// orderVersionList is the versions OrderVersionsEnv lists, none when it is
// unset.
func orderVersionList() ([]int, error) {
	raw := strings.TrimSpace(os.Getenv(OrderVersionsEnv))
	if raw == "" {
		return nil, nil
	}
	known := map[int]bool{}
	for _, f := range orderFlows {
		known[f.Version()] = true
	}
	var vs []int
	for _, part := range strings.Split(raw, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || !known[v] {
			return nil, fmt.Errorf("%s=%q: want a comma-separated list of the order flow's versions (1, 2, 3, 4)", OrderVersionsEnv, raw)
		}
		vs = append(vs, v)
	}
	return vs, nil
}
