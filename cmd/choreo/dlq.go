package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/choreo-go/choreo/saga/ops"
)

func dlqLs(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("dlq ls", flag.ContinueOnError)
	flow := fs.String("flow", "", "")
	last := fs.Int("last", 500, "")
	if _, err := parse(fs, args, 0, "only flags"); err != nil {
		return err
	}
	if *last < 1 {
		return usagef("--last %d: want at least 1", *last)
	}
	var dead []ops.DeadLetter
	var total uint64
	var err error
	if *flow == "" {
		// The newest --last, read without their payloads: a flood of dead
		// letters (any participant may make some) costs this no memory.
		dead, total, err = k.op.LatestDeadLetters(ctx, *last, 0)
	} else if dead, err = k.op.DeadLetters(ctx, *flow); len(dead) > *last {
		total, dead = uint64(len(dead)), dead[len(dead)-*last:]
	}
	if err != nil {
		return err
	}
	if total > uint64(len(dead)) && !k.json {
		fmt.Fprintf(k.errw, "the newest %d of %d dead letters (--last N for more)\n", len(dead), total)
	}
	type row struct {
		Sequence uint64    `json:"sequence"`
		Subject  string    `json:"subject"`
		Consumer string    `json:"consumer"`
		Writer   string    `json:"writer"`
		Time     time.Time `json:"time"`
		Reason   string    `json:"reason"`
	}
	rows := make([]row, 0, len(dead))
	for _, d := range dead {
		rows = append(rows, row{d.Sequence, d.Subject, d.Consumer, d.Writer, d.Time, d.Reason})
	}
	return k.print(rows, func(w io.Writer) {
		fmt.Fprintln(w, "SEQ\tTIME\tWRITTEN BY\tSUBJECT\tREASON")
		for _, r := range rows {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", r.Sequence, r.Time.Format(time.RFC3339), writer(r.Writer), r.Subject, oneLine(r.Reason, 120))
		}
	})
}

func dlqShow(ctx context.Context, k *cli, args []string) error {
	pos, err := parse(flag.NewFlagSet("dlq show", flag.ContinueOnError), args, 1, "SEQ")
	if err != nil {
		return err
	}
	seq, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil {
		return usagef("SEQ %q: want the dead letter's sequence (dlq ls)", pos[0])
	}
	d, err := k.op.DeadLetterAt(ctx, seq)
	if err != nil {
		return err
	}
	return k.print(d, func(w io.Writer) {
		fmt.Fprintf(w, "sequence:\t%d\nwritten by:\t%s (the broker's word; everything below is the writer's)\nsubject:\t%s\nconsumer:\t%s\ntime:\t%s\nreason:\t%s\n", d.Sequence, writer(d.Writer), d.Subject, d.Consumer, d.Time.Format(time.RFC3339Nano), d.Reason)
		for _, h := range slices.Sorted(maps.Keys(d.Header)) {
			fmt.Fprintf(w, "header %s:\t%s\n", h, strings.Join(d.Header[h], ", "))
		}
		if d.Encrypted {
			fmt.Fprintf(w, "payload (%d bytes):\tencrypted (key %s: give --key-file to read it)\n", d.Size, d.Header.Get("Choreo-Key"))
			return
		}
		fmt.Fprintf(w, "payload (%d bytes):\t%s\n", len(d.Data), oneLine(string(d.Data), 2000))
	})
}

func dlqReplay(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("dlq replay", flag.ContinueOnError)
	reason := fs.String("reason", "", "")
	bulk := addBulkFlags(fs, ops.BulkReplay)
	if isAll(args) {
		if _, err := parse(fs, args, 0, "no SEQ with --all"); err != nil {
			return err
		}
		return bulk.run(ctx, k, *reason)
	}
	pos, err := parse(fs, args, 1, "SEQ (or --all and a filter of sagas)")
	if err != nil {
		return err
	}
	seq, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil {
		return usagef("SEQ %q: want the dead letter's sequence (dlq ls)", pos[0])
	}
	what, err := k.op.ReplayDeadLetter(ctx, seq)
	if err != nil {
		return err
	}
	return k.print(map[string]any{"sequence": seq, "replayed": what}, func(w io.Writer) { fmt.Fprintln(w, what) })
}

// stdin is where dlq purge reads its confirmation.
var stdin io.Reader = os.Stdin

func dlqPurge(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("dlq purge", flag.ContinueOnError)
	beforeFlag := fs.String("before", "", "")
	yes := fs.Bool("yes", false, "")
	if _, err := parse(fs, args, 0, "only flags"); err != nil {
		return err
	}
	before, err := timeOrAge("--before", *beforeFlag)
	if err != nil {
		return err
	}
	dead, err := k.op.DeadLetters(ctx, "")
	if err != nil {
		return err
	}
	n := 0
	for _, d := range dead {
		if d.Time.Before(before) {
			n++
		}
	}
	if n == 0 {
		return k.print(map[string]any{"purged": 0}, func(w io.Writer) { fmt.Fprintln(w, "No dead letter is that old.") })
	}
	if !*yes {
		fmt.Fprintf(k.errw, "Purge %d dead letters stored before %s? They cannot be read again. Type yes: ", n, before.Format(time.RFC3339))
		var answer string
		if _, err := fmt.Fscanln(stdin, &answer); err != nil || answer != "yes" {
			return errors.New("not purged")
		}
	}
	purged, err := k.op.PurgeDeadLetters(ctx, before)
	if err != nil {
		return err
	}
	return k.print(map[string]any{"purged": purged}, func(w io.Writer) { fmt.Fprintf(w, "Purged %d dead letters.\n", purged) })
}

// writer is a dead letter's writer as the lists show it.
func writer(w string) string {
	switch w {
	case "":
		return "unknown"
	case "_":
		return "admin/unnamed"
	}
	return w
}
