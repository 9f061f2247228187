package gateway_test

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// The shop's page describes the order saga in words beside the drawing
// it makes from GET /api/flow: the words must agree with that flow (issue
// 20: the page said "invoiced" and "the middle three" while it drew
// version 2).
func TestPageTextAgreesWithTheFlowItDraws(t *testing.T) {
	addr := startShop(t)
	get := func(path string) string {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	var flow struct {
		Name      string
		Version   int
		Positions [][]struct{ Name string }
	}
	if err := json.Unmarshal([]byte(get("/api/flow")), &flow); err != nil {
		t.Fatal(err)
	}
	page := get("/")
	text := func(id string) string {
		m := regexp.MustCompile(`id="` + id + `">([^<]*)<`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("the page has no #%s", id)
		}
		return html.UnescapeString(m[1])
	}
	tagline, hint := text("tagline"), text("flow-hint")

	// What each step does, in the tagline's words.
	words := map[string]string{"charge": "charged", "reserve": "reserved", "invoice": "invoiced", "schedule": "scheduled", "book": "booked", "confirm": "confirmed", "bill": "billed", "deliver": "delivered"}
	drawn := map[string]bool{}
	widest := 0
	for _, pos := range flow.Positions {
		widest = max(widest, len(pos))
		for _, s := range pos {
			drawn[s.Name] = true
			w, ok := words[s.Name]
			if !ok {
				t.Errorf("step %s of %s v%d has no word in this test: add it, and say it on the page", s.Name, flow.Name, flow.Version)
			}
			if !strings.Contains(tagline, w) {
				t.Errorf("the tagline %q does not say %q, but %s v%d has the step %s", tagline, w, flow.Name, flow.Version, s.Name)
			}
		}
	}
	for step, w := range words {
		if !drawn[step] && strings.Contains(tagline, w) {
			t.Errorf("the tagline %q says %q, but %s v%d has no step %s", tagline, w, flow.Name, flow.Version, step)
		}
	}
	count := map[int]string{2: "two", 3: "three", 4: "four"}[widest]
	if want := "the middle " + count + " run in parallel"; count == "" || !strings.Contains(hint, want) {
		t.Errorf("the hint %q; the widest parallel group of %s v%d has %d steps (want %q)", hint, flow.Name, flow.Version, widest, want)
	}
}
