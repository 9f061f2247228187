package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/choreo-go/choreo/saga/ops"
)

func doctor(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	var o ops.DiagnoseOptions
	fs.DurationVar(&o.Idle, "idle", 30*time.Second, "")
	fs.Uint64Var(&o.Behind, "behind", 1000, "")
	fs.DurationVar(&o.Overdue, "overdue", time.Minute, "")
	if _, err := parse(fs, args, 0, "only flags"); err != nil {
		return err
	}
	if o.Idle <= 0 || o.Behind == 0 || o.Overdue <= 0 {
		return usagef("--idle, --behind and --overdue must be above zero")
	}
	found, err := k.op.Diagnose(ctx, o)
	if err != nil {
		return err
	}
	if found == nil {
		found = []ops.Finding{} // [] in JSON, not null
	}
	if err := k.print(found, func(w io.Writer) {
		if len(found) == 0 {
			fmt.Fprintln(w, "Nothing is wrong: every step with sagas waiting has a runner, no consumer is behind, no saga is parked or past its deadline, the streams have room.")
			return
		}
		for _, f := range found {
			fmt.Fprintf(w, "[%s] %s\n\t-> %s\n", f.Kind, f.What, f.Advice)
		}
	}); err != nil {
		return err
	}
	if len(found) > 0 {
		return errFound
	}
	return nil
}

// errFound makes doctor exit 3 when it found something wrong.
var errFound = errors.New("")
