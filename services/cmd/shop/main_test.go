package main

import "testing"

// A shop that joins another's server starts no console of its own unless
// asked (issue 20: it silently started a second one on the next port).
func TestConsoleAddr(t *testing.T) {
	for _, tc := range []struct {
		name           string
		addr           string
		given, joining bool
		want           string
	}{
		{"own server, nothing given: the default", "", false, false, defaultConsoleAddr},
		{"joining, nothing given: none", "", false, true, ""},
		{"joining, asked for one", "127.0.0.1:9000", true, true, "127.0.0.1:9000"},
		{"own server, turned off", "", true, false, ""},
		{"own server, another port", "127.0.0.1:9001", true, false, "127.0.0.1:9001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := consoleAddr(tc.addr, tc.given, tc.joining); got != tc.want {
				t.Errorf("consoleAddr(%q, given %v, joining %v) = %q, want %q", tc.addr, tc.given, tc.joining, got, tc.want)
			}
		})
	}
}
