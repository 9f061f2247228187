package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/ops"
)

func flowsLs(ctx context.Context, k *cli, args []string) error {
	if _, err := parse(flag.NewFlagSet("flows ls", flag.ContinueOnError), args, 0, "no arguments"); err != nil {
		return err
	}
	flows, err := k.op.Flows(ctx)
	if err != nil {
		return err
	}
	return k.print(flows, func(w io.Writer) {
		fmt.Fprintln(w, "FLOW\tVERSION\tINPUT\tSTEPS")
		for _, f := range flows {
			var steps []string
			for _, s := range f.Steps {
				steps = append(steps, fmt.Sprintf("%d:%s(%s)", s.Position, s.Name, s.Owner))
			}
			fmt.Fprintf(w, "%s\tv%d\t%s\t%s\n", f.Name, f.Version, f.Input, strings.Join(steps, " "))
		}
	})
}

func flowsVersions(ctx context.Context, k *cli, args []string) error {
	pos, err := parse(flag.NewFlagSet("flows versions", flag.ContinueOnError), args, 1, "FLOW")
	if err != nil {
		return err
	}
	vs, err := k.op.Versions(ctx, pos[0])
	if err != nil {
		return err
	}
	if len(vs) == 0 {
		return fmt.Errorf("flow %q: no version registered and no saga", pos[0])
	}
	return k.print(vs, func(w io.Writer) {
		fmt.Fprintln(w, "VERSION\tSTATUS\tIN FLIGHT\tENDED\tUNSERVED\tREASON")
		for _, v := range vs {
			ended := v.Sagas[saga.StatusCompleted] + v.Sagas[saga.StatusCompensated]
			status := string(v.Status)
			if !v.Drained.IsZero() {
				status += " " + v.Drained.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "v%d\t%s\t%d\t%d\t%s\t%s\n", v.Version, status, v.Left(), ended, orDash(strings.Join(v.Unserved, ",")), orDash(v.Reason))
		}
	})
}

func flowsRetire(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("flows retire", flag.ContinueOnError)
	drain := fs.Bool("drain", false, "")
	compensate := fs.Bool("compensate", false, "")
	reason := fs.String("reason", "", "")
	pos, err := parse(fs, args, 2, "FLOW VERSION")
	if err != nil {
		return err
	}
	v, err := version(pos[1])
	if err != nil {
		return err
	}
	if *drain == *compensate {
		return usagef("give --drain (sagas in flight finish on the version, which reads draining, then drained) or --compensate (those not past their pivot compensate; it reads retired)")
	}
	if strings.TrimSpace(*reason) == "" {
		return usagef("give --reason: it is recorded, and a compensated saga carries it")
	}
	mode := ops.Drain
	if *compensate {
		mode = ops.CompensateInFlight
	}
	rep, err := k.op.Retire(ctx, pos[0], v, mode, *reason)
	if err != nil {
		return err
	}
	return k.print(rep, func(w io.Writer) {
		fmt.Fprintf(w, "%s v%d is %s: new sagas are refused.\n", rep.Flow, rep.Version, rep.Status)
		switch {
		case rep.Left() == 0 && !rep.Drained.IsZero():
			fmt.Fprintf(w, "No saga of v%d is in flight (drained %s): its runners may go.\n", rep.Version, rep.Drained.Format(time.RFC3339))
		case rep.Left() == 0:
			fmt.Fprintf(w, "No saga of v%d is in flight: its runners may go.\n", rep.Version)
		case mode == ops.Drain:
			fmt.Fprintf(w, "In flight: %s, finishing on v%d. Keep its runners until `choreo flows versions %s` shows none.\n", sagas(rep.Left()), rep.Version, rep.Flow)
		default:
			fmt.Fprintf(w, "In flight: %s, compensating on v%d's runners. Keep them until none is left.\n", sagas(rep.Left()), rep.Version)
		}
		if len(rep.Forward) > 0 {
			fmt.Fprintf(w, "Past their pivot, finishing forward: %s\n", strings.Join(rep.Forward, " "))
		}
	})
}

func flowsReinstate(ctx context.Context, k *cli, args []string) error {
	pos, err := parse(flag.NewFlagSet("flows reinstate", flag.ContinueOnError), args, 2, "FLOW VERSION")
	if err != nil {
		return err
	}
	v, err := version(pos[1])
	if err != nil {
		return err
	}
	if err := k.op.Reinstate(ctx, pos[0], v); err != nil {
		return err
	}
	return k.print(map[string]any{"flow": pos[0], "version": v, "status": ops.VersionActive}, func(w io.Writer) {
		fmt.Fprintf(w, "%s v%d is active again.\n", pos[0], v)
	})
}

func flowsDiagram(ctx context.Context, k *cli, args []string) error {
	flow, want, err := flowArgs(flag.NewFlagSet("flows diagram", flag.ContinueOnError), args, 1, "FLOW [VERSION]")
	if err != nil {
		return err
	}
	flows, err := k.op.Flows(ctx)
	if err != nil {
		return err
	}
	var found *describe.Flow
	for i, f := range flows {
		if f.Name == flow && (f.Version == want || (want == 0 && (found == nil || f.Version > found.Version))) {
			found = &flows[i]
		}
	}
	if found == nil {
		return fmt.Errorf("flow %s: no runner registered that version", flow)
	}
	if k.json {
		return k.print(map[string]any{"flow": found.Name, "version": found.Version, "mermaid": found.Mermaid()}, nil)
	}
	_, err = io.WriteString(k.out, found.Mermaid())
	return err
}

// flowsAsyncAPI writes the AsyncAPI document of every registered flow
// version, of one flow's versions, or of one version. It is JSON with or
// without --json.
func flowsAsyncAPI(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("flows asyncapi", flag.ContinueOnError)
	title := fs.String("title", "", "")
	host := fs.String("host", "", "")
	flow, want, err := flowArgs(fs, args, 0, "[FLOW [VERSION]]")
	if err != nil {
		return err
	}
	flows, err := k.op.Flows(ctx)
	if err != nil {
		return err
	}
	var picked []describe.Flow
	for _, f := range flows {
		if (flow == "" || f.Name == flow) && (want == 0 || f.Version == want) {
			picked = append(picked, f)
		}
	}
	switch {
	case len(picked) > 0:
	case flow == "":
		return fmt.Errorf("no runner registered a flow yet")
	case want > 0:
		return fmt.Errorf("flow %s v%d: no runner registered that version", flow, want)
	default:
		return fmt.Errorf("flow %s: no runner registered that version", flow)
	}
	o := describe.AsyncAPIOptions{Title: *title, Server: *host}
	if o.Server == "" {
		first, _, _ := strings.Cut(k.server, ",")
		if u, err := url.Parse(first); err == nil && u.Host != "" {
			o.Server, o.TLS = u.Host, u.Scheme == "tls"
		}
	}
	doc, err := describe.AsyncAPI(o, picked...)
	if err != nil {
		return err
	}
	_, err = k.out.Write(append(doc, '\n'))
	return err
}

func flowsPause(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("flows pause", flag.ContinueOnError)
	reason := fs.String("reason", "", "")
	untilFlag := fs.String("until", "", "")
	flow, v, step, err := pauseArgs(fs, args)
	if err != nil {
		return err
	}
	if strings.TrimSpace(*reason) == "" {
		return usagef("give --reason: the pause records it")
	}
	var until time.Time
	if *untilFlag != "" {
		if d, err := time.ParseDuration(*untilFlag); err == nil && d > 0 {
			until = time.Now().Add(d)
		} else if until, err = time.Parse(time.RFC3339, *untilFlag); err != nil {
			return usagef("--until %q: want a time (2026-11-27T00:00:00Z) or a duration (30m)", *untilFlag)
		}
	}
	if err := k.op.PauseStep(ctx, flow, v, step, *reason, until); err != nil {
		return err
	}
	what := pausedWhat(flow, v, step)
	return k.print(map[string]any{"flow": flow, "version": v, "step": step, "paused": *reason, "until": until}, func(w io.Writer) {
		fmt.Fprintf(w, "%s is paused: its triggers wait in the broker until choreo flows resume %s.\n", what, strings.TrimSpace(fmt.Sprintf("%s %d %s", flow, v, step)))
	})
}

func flowsResume(ctx context.Context, k *cli, args []string) error {
	flow, v, step, err := pauseArgs(flag.NewFlagSet("flows resume", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if err := k.op.ResumeStep(ctx, flow, v, step); err != nil {
		return err
	}
	return k.print(map[string]any{"flow": flow, "version": v, "step": step, "status": "resumed"}, func(w io.Writer) {
		fmt.Fprintf(w, "%s resumes where it stopped.\n", pausedWhat(flow, v, step))
	})
}

func flowsPaused(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("flows paused", flag.ContinueOnError)
	flow := fs.String("flow", "", "")
	if _, err := parse(fs, args, 0, "only flags"); err != nil {
		return err
	}
	pauses, err := k.op.Pauses(ctx, *flow)
	if err != nil {
		return err
	}
	if pauses == nil {
		pauses = []ops.StepPause{}
	}
	return k.print(pauses, func(w io.Writer) {
		fmt.Fprintln(w, "FLOW\tVERSION\tSTEP\tBY\tSINCE\tUNTIL\tREASON")
		for _, p := range pauses {
			until := "-"
			if !p.Until.IsZero() {
				until = p.Until.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%s\tv%d\t%s\t%s\t%s\t%s\t%s\n", p.Flow, p.Version, orDash(p.Step), p.By, p.At.Format(time.RFC3339), until, oneLine(p.Reason, 80))
		}
	})
}

// pauseArgs reads FLOW VERSION [STEP].
func pauseArgs(fs *flag.FlagSet, args []string) (flow string, v int, step string, err error) {
	pos, err := parse(fs, args, 3, "FLOW VERSION [STEP]")
	if err != nil {
		if pos, err = parse(fs, args, 2, "FLOW VERSION [STEP]"); err != nil {
			return "", 0, "", err
		}
	}
	if v, err = version(pos[1]); err != nil {
		return "", 0, "", err
	}
	if len(pos) == 3 {
		step = pos[2]
	}
	return pos[0], v, step, nil
}

func pausedWhat(flow string, v int, step string) string {
	if step == "" {
		return fmt.Sprintf("%s v%d (every step)", flow, v)
	}
	return fmt.Sprintf("%s v%d step %s", flow, v, step)
}
