package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
)

// print writes v as JSON with --json, else calls text.
func (k *cli) print(v any, text func(w io.Writer)) error {
	if k.json {
		enc := json.NewEncoder(k.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	text(tw)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(k.out, printable(b.String()))
	return err
}

// printable makes text safe for a terminal: what the command prints comes
// from the broker (dead letters' headers and payloads, step errors), which
// any participant writes, so control characters other than newline and tab
// (escape sequences: OSC 52 writes the clipboard) and invalid UTF-8 show
// as U+FFFD.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return unicode.ReplacementChar
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

func sagas(n int) string {
	if n == 1 {
		return "1 saga"
	}
	return strconv.Itoa(n) + " sagas"
}

// oneLine shortens s to n characters on one line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
