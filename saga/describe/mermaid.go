package describe

import (
	"fmt"
	"strings"

	"github.com/choreo-go/choreo/internal/wire"
)

// Mermaid draws the flow version as a Mermaid flowchart: each step with
// its owner, parallel groups side by side, the pivot marked, a dashed
// "input" edge to a step whose input is not its predecessor's (InputFrom),
// and each compensation (its Undo name) as a dashed edge back. It is generated from
// the definition, so it cannot drift from what runs.
func (fi Flow) Mermaid() string {
	var b strings.Builder
	fmt.Fprintf(&b, "flowchart LR\n  %%%% %s v%d, generated from its definition\n", fi.Name, fi.Version)
	b.WriteString("  start([" + mermaidText(fi.Input) + "])\n")
	positions := fi.positions()
	id := func(s Step) string { return "s_" + strings.ReplaceAll(s.Name, "-", "_") }
	for _, pos := range positions {
		for _, s := range pos {
			label := s.Name
			if s.Owner != "" {
				label += "<br/><i>" + s.Owner + "</i>"
			}
			switch s.Kind {
			case Pivot:
				fmt.Fprintf(&b, "  %s{{\"%s<br/>pivot\"}}\n", id(s), mermaidText(label))
			case Retriable:
				fmt.Fprintf(&b, "  %s[\"%s<br/>retried\"]\n", id(s), mermaidText(label))
			default:
				fmt.Fprintf(&b, "  %s[\"%s\"]\n", id(s), mermaidText(label))
			}
		}
	}
	b.WriteString("  done([completed])\n")
	prev := []string{"start"}
	for _, pos := range positions {
		var cur []string
		for _, s := range pos {
			for _, p := range prev {
				fmt.Fprintf(&b, "  %s --> %s\n", p, id(s))
			}
			cur = append(cur, id(s))
		}
		prev = cur
	}
	for _, p := range prev {
		fmt.Fprintf(&b, "  %s --> done\n", p)
	}
	for _, s := range fi.Steps {
		switch {
		case s.InputFrom == FromFlow:
			fmt.Fprintf(&b, "  start -. input .-> %s\n", id(s))
		case wire.Token(s.InputFrom):
			fmt.Fprintf(&b, "  %s -. input .-> %s\n", id(Step{Name: s.InputFrom}), id(s))
		}
	}
	for _, s := range fi.Steps {
		if s.Kind == Compensatable {
			undo := s.Undo
			if undo == "" {
				undo = "compensate"
			}
			fmt.Fprintf(&b, "  %s -. %s .-> %s\n", id(s), mermaidText(undo), id(s))
		}
	}
	return b.String()
}

// positions groups the steps by position, in order: the members of a
// Parallel group share one. A position Define cannot make (negative, or
// past the steps) is left out.
func (fi Flow) positions() [][]Step {
	var out [][]Step
	for _, s := range fi.Steps {
		if s.Position < 0 || s.Position > len(fi.Steps) {
			continue
		}
		for len(out) <= s.Position {
			out = append(out, nil)
		}
		out[s.Position] = append(out[s.Position], s)
	}
	return out
}

// mermaidText keeps a label from closing Mermaid's quotes.
func mermaidText(s string) string { return strings.ReplaceAll(s, `"`, "#quot;") }
