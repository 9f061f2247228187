package console

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPreview(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{`{"a":1}`, 10, `{"a":1}`},
		{"abcdef", 3, "abc…"},
		{"\x00\x01ok\n\tz", 20, "\uFFFD\uFFFDok\n\tz"},
		{"\xff\xfe", 10, "\uFFFD"},
		{"aé", 2, "a…"},    // é cut in two: the half is dropped
		{"aébc", 3, "aé…"}, // é whole
	} {
		got := preview([]byte(tc.in), tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("preview(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
	if got := preview([]byte(strings.Repeat("x", 1000)), previewBytes); len(got) != previewBytes+len("…") {
		t.Errorf("a long payload previews as %d bytes", len(got))
	}
}
