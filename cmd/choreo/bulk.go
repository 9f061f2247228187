package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/ops"
)

// bulkFlags are the flags of an act's bulk form: --all, the filter, the
// dry run and the rate.
type bulkFlags struct {
	all, dryRun         *bool
	flow, status, step  *string
	since, before, rate *string
	version             *int
	where               *multi
	action              ops.BulkAction
	progress            io.Writer // where the progress bar goes: a terminal, or nil
}

// multi is a flag that may be given more than once.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

// addBulkFlags adds the bulk form's flags to fs, for action.
func addBulkFlags(fs *flag.FlagSet, action ops.BulkAction) *bulkFlags {
	b := &bulkFlags{action: action, where: &multi{}}
	b.all = fs.Bool("all", false, "")
	b.dryRun = fs.Bool("dry-run", false, "")
	b.flow = fs.String("flow", "", "")
	b.status = fs.String("status", "", "")
	b.step = fs.String("step", "", "")
	b.since = fs.String("since", "", "")
	b.before = fs.String("before", "", "")
	b.rate = fs.String("rate", "", "")
	b.version = fs.Int("version", 0, "")
	fs.Var(b.where, "where", "")
	return b
}

// spec reads the bulk form's flags as a bulk act.
func (b *bulkFlags) spec(reason string) (ops.BulkSpec, error) {
	s := ops.BulkSpec{Action: b.action, Reason: reason, Filter: ops.Filter{Flow: *b.flow, Version: *b.version, Step: *b.step}}
	if strings.TrimSpace(reason) == "" {
		return s, usagef("give --reason: every saga's log records it")
	}
	known := []saga.Status{saga.StatusScheduled, saga.StatusRunning, saga.StatusCompleted, saga.StatusCompensating, saga.StatusCompensated, saga.StatusCompensationFailed}
	if *b.status != "" {
		for _, st := range strings.Split(*b.status, ",") {
			if !slices.Contains(known, saga.Status(st)) {
				return s, usagef("--status %q: want one of %v", st, known)
			}
			s.Filter.Statuses = append(s.Filter.Statuses, ops.Statuses(saga.Status(st))...)
		}
	}
	var err error
	if *b.since != "" {
		if s.Filter.Since, err = timeOrAge("--since", *b.since); err != nil {
			return s, err
		}
	}
	if *b.before != "" {
		if s.Filter.Before, err = timeOrAge("--before", *b.before); err != nil {
			return s, err
		}
	}
	for _, w := range *b.where {
		c, err := ops.ParseCond(w)
		if err != nil {
			return s, usagef("--where %q: %v", w, strings.TrimPrefix(err.Error(), "saga: invalid option: "))
		}
		s.Filter.Where = append(s.Filter.Where, c)
	}
	if *b.rate != "" {
		r, err := strconv.ParseFloat(strings.TrimSuffix(*b.rate, "/s"), 64)
		if err != nil || r <= 0 {
			return s, usagef("--rate %q: want sagas a second above zero (200 or 200/s)", *b.rate)
		}
		s.Rate = r
	}
	return s, nil
}

// run runs the bulk act (or its dry run) and prints what it did.
func (b *bulkFlags) run(ctx context.Context, k *cli, reason string) error {
	if isTerminal(k.errw) {
		b.progress = k.errw
	}
	spec, err := b.spec(reason)
	if err != nil {
		return err
	}
	if *b.dryRun {
		plan, err := k.op.PlanBulk(ctx, spec)
		if err != nil {
			return err
		}
		return k.print(plan, func(w io.Writer) {
			fmt.Fprintf(w, "dry run: %s would %s %s; nothing was changed.\n", sagas(plan.Count), spec.Action, filterLine(spec.Filter))
			if len(plan.Sample) == 0 {
				return
			}
			fmt.Fprintln(w, "FLOW\tID\tVERSION\tSTATUS\tSTEPS\tSTARTED")
			for _, s := range plan.Sample {
				fmt.Fprintf(w, "%s\t%s\tv%d\t%s\t%s\t%s\n", s.Flow, s.ID, s.Version, s.Status, orDash(strings.Join(s.Steps, ",")), s.StartedAt.Format(time.RFC3339))
			}
			if plan.Count > len(plan.Sample) {
				fmt.Fprintf(w, "… and %d more\n", plan.Count-len(plan.Sample))
			}
		})
	}
	var bar func(ops.BulkRecord)
	if b.progress != nil {
		last := time.Time{}
		bar = func(r ops.BulkRecord) {
			if time.Since(last) < 100*time.Millisecond && r.Handled() < r.Matched {
				return
			}
			last = time.Now()
			fmt.Fprint(b.progress, "\r"+progressLine(r))
		}
	}
	rec, err := k.op.Bulk(ctx, spec, bar)
	if b.progress != nil && rec != nil {
		fmt.Fprintln(b.progress, "\r"+progressLine(*rec))
	}
	if err != nil && !errors.Is(err, ops.ErrStopped) {
		if rec != nil {
			return fmt.Errorf("bulk act %s: %w", rec.ID, err)
		}
		return err
	}
	perr := printBulk(k, rec)
	if perr != nil {
		return perr
	}
	if rec.Failed > 0 {
		return fmt.Errorf("bulk act %s: %d saga(s) failed (choreo bulk show %s)", rec.ID, rec.Failed, rec.ID)
	}
	return nil
}

// progressLine is a progress bar: [#####.....] 500/1000 done 490 skipped 10 failed 0.
func progressLine(r ops.BulkRecord) string {
	const width = 30
	filled := width
	if r.Matched > 0 {
		filled = r.Handled() * width / r.Matched
	}
	return fmt.Sprintf("[%s%s] %d/%d done %d skipped %d failed %d", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		r.Handled(), r.Matched, r.Done, r.Skipped, r.Failed)
}

// filterLine says what a filter selects, in words.
func filterLine(f ops.Filter) string {
	var parts []string
	add := func(s string) { parts = append(parts, s) }
	if f.Flow != "" {
		add("flow " + f.Flow)
	} else {
		add("every flow")
	}
	if f.Version != 0 {
		add(fmt.Sprintf("v%d", f.Version))
	}
	if len(f.Statuses) > 0 {
		var ss []string
		for _, s := range f.Statuses {
			ss = append(ss, string(s))
		}
		add("status " + strings.Join(ss, ","))
	}
	if f.Step != "" {
		add("at step " + f.Step)
	}
	if !f.Since.IsZero() {
		add("started since " + f.Since.UTC().Format(time.RFC3339))
	}
	if !f.Before.IsZero() {
		add("started before " + f.Before.UTC().Format(time.RFC3339))
	}
	for _, c := range f.Where {
		add("where " + c.String())
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func printBulk(k *cli, r *ops.BulkRecord) error {
	return k.print(r, func(w io.Writer) {
		fmt.Fprintf(w, "bulk act %s: %s %s, by %s: %s\n", r.ID, r.Action, filterLine(r.Filter), r.By, r.State)
		fmt.Fprintf(w, "reason: %s\n", r.Reason)
		fmt.Fprintf(w, "started %s", r.Started.Format(time.RFC3339))
		if !r.Ended.IsZero() {
			fmt.Fprintf(w, ", ended %s", r.Ended.Format(time.RFC3339))
		}
		fmt.Fprintf(w, "\nmatched %d: done %d, skipped %d, failed %d\n", r.Matched, r.Done, r.Skipped, r.Failed)
		if r.Error != "" {
			fmt.Fprintf(w, "error: %s\n", r.Error)
		}
		if len(r.Items) > 0 {
			fmt.Fprintln(w, "FLOW\tID\tOUTCOME\tREASON")
			for _, it := range r.Items {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", it.Flow, it.ID, it.Outcome, orDash(oneLine(it.Reason, 120)))
			}
		}
	})
}

// isTerminal reports whether w is a terminal (a character device): the
// progress bar is drawn only there.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func bulkLs(ctx context.Context, k *cli, args []string) error {
	if _, err := parse(flag.NewFlagSet("bulk ls", flag.ContinueOnError), args, 0, "no arguments"); err != nil {
		return err
	}
	acts, err := k.op.BulkActs(ctx)
	if err != nil {
		return err
	}
	if acts == nil {
		acts = []ops.BulkRecord{}
	}
	return k.print(acts, func(w io.Writer) {
		fmt.Fprintln(w, "ID\tACTION\tBY\tSTARTED\tSTATE\tMATCHED\tDONE\tSKIPPED\tFAILED\tREASON")
		for _, r := range acts {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", r.ID, r.Action, r.By, r.Started.Format(time.RFC3339), r.State, r.Matched, r.Done, r.Skipped, r.Failed, oneLine(r.Reason, 60))
		}
	})
}

func bulkShow(ctx context.Context, k *cli, args []string) error {
	pos, err := parse(flag.NewFlagSet("bulk show", flag.ContinueOnError), args, 1, "ID")
	if err != nil {
		return err
	}
	r, err := k.op.BulkAct(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("bulk act %s: %w", pos[0], err)
	}
	return printBulk(k, r)
}

func bulkStop(ctx context.Context, k *cli, args []string) error {
	pos, err := parse(flag.NewFlagSet("bulk stop", flag.ContinueOnError), args, 1, "ID")
	if err != nil {
		return err
	}
	if err := k.op.StopBulk(ctx, pos[0]); err != nil {
		return fmt.Errorf("bulk act %s: %w", pos[0], err)
	}
	return k.print(map[string]string{"id": pos[0], "stop": "asked"}, func(w io.Writer) {
		fmt.Fprintf(w, "bulk act %s stops within a second (choreo bulk show %s).\n", pos[0], pos[0])
	})
}
