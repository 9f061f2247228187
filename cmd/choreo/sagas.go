package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/ops"
)

func sagasLs(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("sagas ls", flag.ContinueOnError)
	flow := fs.String("flow", "", "")
	status := fs.String("status", "", "")
	ver := fs.Int("version", 0, "")
	sinceFlag := fs.String("since", "", "")
	var where []saga.Cond
	fs.Func("where", "", func(v string) error {
		c, err := saga.ParseCond(v)
		if err != nil {
			return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), saga.ErrInvalidOption.Error()+": "))
		}
		where = append(where, c)
		return nil
	})
	if _, err := parse(fs, args, 0, "only flags"); err != nil {
		return err
	}
	var statuses []saga.Status
	if *status != "" {
		st := saga.Status(*status)
		known := []saga.Status{saga.StatusScheduled, saga.StatusRunning, saga.StatusCompleted, saga.StatusCompensating, saga.StatusCompensated, saga.StatusCompensationFailed}
		if !slices.Contains(known, st) {
			return usagef("--status %q: want one of %v", *status, known)
		}
		statuses = append(statuses, st)
	}
	var since time.Time
	if *sinceFlag != "" {
		var err error
		if since, err = timeOrAge("--since", *sinceFlag); err != nil {
			return err
		}
	}
	names, err := flowNames(ctx, k, *flow)
	if err != nil {
		return err
	}
	if len(where) > 0 && *flow == "" {
		// The flows whose sagas have every attribute the conditions name.
		if names, err = flowsWith(ctx, k, where); err != nil {
			return err
		}
	}
	var list []*saga.State
	for _, name := range names {
		var l []*saga.State
		if len(where) > 0 {
			l, err = k.c.Find(ctx, saga.Named(name), saga.Filter{Statuses: statuses, Version: *ver, Since: since, Where: where})
			if errors.Is(err, saga.ErrInvalidOption) {
				return usagef("--where: %s", strings.TrimPrefix(err.Error(), saga.ErrInvalidOption.Error()+": "))
			}
		} else {
			l, err = k.c.List(ctx, saga.Named(name), statuses...)
		}
		if err != nil {
			return err
		}
		list = append(list, l...)
	}
	list = slices.DeleteFunc(list, func(s *saga.State) bool {
		return (*ver > 0 && s.Version != *ver) || s.StartedAt.Before(since)
	})
	sort.SliceStable(list, func(i, j int) bool { return list[i].StartedAt.Before(list[j].StartedAt) })
	return k.print(list, func(w io.Writer) {
		fmt.Fprintln(w, "FLOW\tID\tVERSION\tSTATUS\tSTARTED\tWAITING ON\tREASON")
		for _, s := range list {
			note := s.Reason
			if s.Status == saga.StatusScheduled {
				note = "begins " + s.Scheduled.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%s\t%s\tv%d\t%s\t%s\t%s\t%s\n", s.Flow, s.ID, s.Version, s.Status, s.StartedAt.Format(time.RFC3339), orDash(waitingOn(s)), orDash(note))
		}
	})
}

// flowsWith returns the registered flows some version of which declares
// every attribute the conditions name.
func flowsWith(ctx context.Context, k *cli, where []saga.Cond) ([]string, error) {
	flows, err := k.op.Flows(ctx)
	if err != nil {
		return nil, err
	}
	has := map[string]map[string]bool{}
	for _, f := range flows {
		if has[f.Name] == nil {
			has[f.Name] = map[string]bool{}
		}
		for _, a := range f.Attrs {
			has[f.Name][a.Name] = true
		}
	}
	var names []string
	for name, attrs := range has {
		if !slices.ContainsFunc(where, func(c saga.Cond) bool { return !attrs[c.Attr] }) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, usagef("--where: no registered flow has the search attributes %v", condAttrs(where))
	}
	slices.Sort(names)
	return names, nil
}

func condAttrs(where []saga.Cond) []string {
	var out []string
	for _, c := range where {
		if !slices.Contains(out, c.Attr) {
			out = append(out, c.Attr)
		}
	}
	return out
}

// flowNames is the flow --flow names, or every registered flow when it
// is empty.
func flowNames(ctx context.Context, k *cli, flow string) ([]string, error) {
	if flow != "" {
		return []string{flow}, nil
	}
	flows, err := k.op.Flows(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range flows {
		if !slices.Contains(names, f.Name) {
			names = append(names, f.Name)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no runner registered a flow yet: give --flow")
	}
	return names, nil
}

func sagasShow(ctx context.Context, k *cli, args []string) error {
	pos, err := parse(flag.NewFlagSet("sagas show", flag.ContinueOnError), args, 2, "FLOW ID")
	if err != nil {
		return err
	}
	f := saga.Named(pos[0])
	st, err := k.c.Get(ctx, f, pos[1])
	if err != nil {
		return fmt.Errorf("saga %s/%s: %w", pos[0], pos[1], err)
	}
	tl, err := k.c.Timeline(ctx, f, pos[1])
	if err != nil {
		return fmt.Errorf("saga %s/%s: %w", pos[0], pos[1], err)
	}
	type shown struct {
		*saga.State
		Timeline []saga.Event `json:"timeline"`
	}
	return k.print(shown{st, tl}, func(w io.Writer) {
		fmt.Fprintf(w, "saga %s/%s on v%d: %s\n", st.Flow, st.ID, st.Version, st.Status)
		if st.Reason != "" {
			fmt.Fprintf(w, "reason: %s\n", st.Reason)
		}
		switch {
		case st.Status == saga.StatusScheduled:
			fmt.Fprintf(w, "begins: %s\n", st.Scheduled.Format(time.RFC3339))
		case !st.Scheduled.IsZero():
			fmt.Fprintf(w, "scheduled for: %s\n", st.Scheduled.Format(time.RFC3339))
		}
		if st.TraceID != "" {
			fmt.Fprintf(w, "trace: %s\n", st.TraceID)
		}
		if p := st.Parent; p != nil {
			fmt.Fprintf(w, "parent: %s/%s, step %s (this saga is its child)\n", p.Flow, p.ID, p.Step)
		}
		if len(st.Attrs) > 0 {
			var attrs []string
			for _, name := range slices.Sorted(maps.Keys(st.Attrs)) {
				attrs = append(attrs, name+"="+st.Attrs[name])
			}
			fmt.Fprintf(w, "attributes: %s\n", strings.Join(attrs, " "))
		}
		if p := st.Paused; p != nil {
			fmt.Fprintf(w, "paused: by %s at %s: %s\n", p.By, p.At.Format(time.RFC3339), p.Reason)
		}
		fmt.Fprintln(w, "STEP\tSTATUS\tATTEMPTS\tUNDO ATTEMPTS\tNOTE")
		for _, s := range st.Steps {
			note := s.Error
			if s.CompensationError != "" {
				note = strings.TrimPrefix(note+"; compensation: "+s.CompensationError, "; ")
			}
			if s.Waiting != "" {
				note = s.Waiting
			}
			if s.Status == saga.StepWaiting {
				note = fmt.Sprintf("waiting on %s until %s", s.WaitingOn, s.WaitUntil.UTC().Format(time.RFC3339))
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\n", s.Name, s.Status, s.Attempts, s.CompensationAttempts, orDash(note))
		}
		fmt.Fprintln(w, "SEQ\tEVENT\tTIME")
		for _, e := range tl {
			fmt.Fprintf(w, "%d\t%s\t%s\n", e.Sequence, e, e.Time.Format(time.RFC3339Nano))
		}
	})
}

func sagasCancel(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("sagas cancel", flag.ContinueOnError)
	reason := fs.String("reason", "", "")
	bulk := addBulkFlags(fs, ops.BulkCancel)
	if isAll(args) {
		if _, err := parse(fs, args, 0, "no FLOW ID with --all"); err != nil {
			return err
		}
		return bulk.run(ctx, k, *reason)
	}
	pos, err := parse(fs, args, 2, "FLOW ID (or --all and a filter)")
	if err != nil {
		return err
	}
	if strings.TrimSpace(*reason) == "" {
		return usagef("give --reason: the saga carries it")
	}
	// A saga that has not begun ends compensated at once: nothing ran.
	scheduled := false
	if st, err := k.c.Get(ctx, saga.Named(pos[0]), pos[1]); err == nil {
		scheduled = st.Status == saga.StatusScheduled
	}
	if err := k.op.Cancel(ctx, pos[0], pos[1], *reason); err != nil {
		return fmt.Errorf("saga %s/%s: %w", pos[0], pos[1], err)
	}
	status := saga.StatusCompensating
	if scheduled {
		status = saga.StatusCompensated
	}
	return k.print(map[string]string{"flow": pos[0], "id": pos[1], "status": string(status)}, func(w io.Writer) {
		if status == saga.StatusCompensated {
			fmt.Fprintf(w, "saga %s/%s is cancelled: it had not begun, and ends compensated.\n", pos[0], pos[1])
			return
		}
		fmt.Fprintf(w, "saga %s/%s is cancelled: it compensates.\n", pos[0], pos[1])
	})
}

func sagasRetry(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("sagas retry", flag.ContinueOnError)
	reason := fs.String("reason", "", "")
	bulk := addBulkFlags(fs, ops.BulkRetry)
	if isAll(args) {
		if _, err := parse(fs, args, 0, "no FLOW ID with --all"); err != nil {
			return err
		}
		return bulk.run(ctx, k, *reason)
	}
	pos, err := parse(fs, args, 2, "FLOW ID (or --all and a filter)")
	if err != nil {
		return err
	}
	if err := k.op.RetryCompensation(ctx, pos[0], pos[1]); err != nil {
		return fmt.Errorf("saga %s/%s: %w", pos[0], pos[1], err)
	}
	return k.print(map[string]string{"flow": pos[0], "id": pos[1], "status": string(saga.StatusCompensating)}, func(w io.Writer) {
		fmt.Fprintf(w, "saga %s/%s compensates again.\n", pos[0], pos[1])
	})
}

// isAll reports whether a command's arguments ask for its bulk form.
func isAll(args []string) bool {
	return slices.Contains(args, "--all") || slices.Contains(args, "-all")
}

func sagasPause(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("sagas pause", flag.ContinueOnError)
	reason := fs.String("reason", "", "")
	bulk := addBulkFlags(fs, ops.BulkPause)
	if isAll(args) {
		if _, err := parse(fs, args, 0, "no FLOW ID with --all"); err != nil {
			return err
		}
		return bulk.run(ctx, k, *reason)
	}
	pos, err := parse(fs, args, 2, "FLOW ID (or --all and a filter)")
	if err != nil {
		return err
	}
	if strings.TrimSpace(*reason) == "" {
		return usagef("give --reason: the saga's log records it")
	}
	if err := k.op.PauseSaga(ctx, pos[0], pos[1], *reason); err != nil {
		return fmt.Errorf("saga %s/%s: %w", pos[0], pos[1], err)
	}
	return k.print(map[string]string{"flow": pos[0], "id": pos[1], "paused": *reason}, func(w io.Writer) {
		fmt.Fprintf(w, "saga %s/%s is paused: the steps it triggers wait until choreo sagas resume %s %s.\n", pos[0], pos[1], pos[0], pos[1])
	})
}

func sagasResume(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("sagas resume", flag.ContinueOnError)
	reason := fs.String("reason", "", "")
	bulk := addBulkFlags(fs, ops.BulkResume)
	if isAll(args) {
		if _, err := parse(fs, args, 0, "no FLOW ID with --all"); err != nil {
			return err
		}
		return bulk.run(ctx, k, *reason)
	}
	pos, err := parse(fs, args, 2, "FLOW ID (or --all and a filter)")
	if err != nil {
		return err
	}
	if err := k.op.ResumeSaga(ctx, pos[0], pos[1], *reason); err != nil {
		return fmt.Errorf("saga %s/%s: %w", pos[0], pos[1], err)
	}
	return k.print(map[string]string{"flow": pos[0], "id": pos[1], "status": "resumed"}, func(w io.Writer) {
		fmt.Fprintf(w, "saga %s/%s resumes: its held steps run.\n", pos[0], pos[1])
	})
}

func sagasWatch(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("sagas watch", flag.ContinueOnError)
	flow := fs.String("flow", "", "")
	if _, err := parse(fs, args, 0, "only flags"); err != nil {
		return err
	}
	names, err := flowNames(ctx, k, *flow)
	if err != nil {
		return err
	}
	states := make(chan *saga.State)
	var wg sync.WaitGroup
	for _, name := range names {
		ch, err := k.c.Watch(ctx, saga.Named(name))
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for st := range ch {
				select {
				case states <- st:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(states) }()
	enc := json.NewEncoder(k.out)
	for st := range states {
		if k.json {
			if err := enc.Encode(st); err != nil {
				return err
			}
			continue
		}
		var running []string
		for _, s := range st.Steps {
			switch s.Status {
			case saga.StepRunning, saga.StepCompensating:
				running = append(running, s.Name+":"+string(s.Status))
			case saga.StepWaiting:
				running = append(running, s.Name+":waiting-on-"+s.WaitingOn)
			}
		}
		fmt.Fprintln(k.out, watchLine(st, running))
	}
	return nil
}

// watchLine is one line of sagas watch: when, which saga, where it
// stands, the steps under way, and why it compensates when it does.
func watchLine(st *saga.State, running []string) string {
	line := fmt.Sprintf("%s %s %s v%d %s", st.UpdatedAt.Format(time.RFC3339Nano), st.Flow, st.ID, st.Version, st.Status)
	if len(running) > 0 {
		line += " " + strings.Join(running, " ")
	}
	if st.Reason != "" {
		line += " reason: " + st.Reason
	}
	return line
}

// waitingOn says whom the steps of st completed later wait on, as
// "step:party" ("charge:customer"), "" when none waits.
func waitingOn(st *saga.State) string {
	var out []string
	for _, s := range st.Steps {
		if s.Status == saga.StepWaiting {
			out = append(out, s.Name+":"+s.WaitingOn)
		}
	}
	return strings.Join(out, ",")
}
