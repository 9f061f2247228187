package main

import (
	"flag"
	"io"
	"strconv"
	"strings"
	"time"
)

// parse parses a command's flags and wants exactly n positional arguments.
func parse(fs *flag.FlagSet, args []string, n int, names string) ([]string, error) {
	fs.SetOutput(io.Discard)
	// Flags may come after the positional arguments.
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) > 0 {
			pos, args = append(pos, args[0]), args[1:]
		}
	}
	if len(pos) != n {
		return nil, usagef("want %s", names)
	}
	return pos, nil
}

// flowArgs reads the positional arguments [FLOW [VERSION]], of which at
// least min are required; the version is 0 when not given.
func flowArgs(fs *flag.FlagSet, args []string, min int, names string) (flow string, v int, err error) {
	var pos []string
	for n := min; n <= 2; n++ {
		if pos, err = parse(fs, args, n, names); err == nil {
			break
		}
	}
	if err != nil {
		return "", 0, err
	}
	if len(pos) > 0 {
		flow = pos[0]
	}
	if len(pos) == 2 {
		v, err = version(pos[1])
	}
	return flow, v, err
}

func version(s string) (int, error) {
	v, err := strconv.Atoi(strings.TrimPrefix(s, "v"))
	if err != nil || v < 1 {
		return 0, usagef("version %q: want a number from 1", s)
	}
	return v, nil
}

// timeOrAge reads a flag that is a time (RFC 3339) or an age (24h).
func timeOrAge(name, v string) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, usagef("%s %q: want a time (2026-11-27T00:00:00Z) or an age (24h)", name, v)
	}
	return t, nil
}
