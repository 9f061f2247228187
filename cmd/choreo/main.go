// Command choreo is the operator's command line of choreo: it looks at
// sagas and flow versions in a running system and acts on them, through
// the saga package's public API, without being compiled with the flows
// (runners register the definitions they serve in the broker).
//
//	choreo [connection flags] flows ls
//	choreo [connection flags] flows versions FLOW
//	choreo [connection flags] flows retire FLOW VERSION (--drain | --compensate) --reason TEXT
//	choreo [connection flags] flows reinstate FLOW VERSION
//	choreo [connection flags] sagas ls [--flow FLOW] [--status S] [--version N] [--since TIME|AGE]
//	choreo [connection flags] sagas show FLOW ID
//	choreo [connection flags] sagas cancel FLOW ID --reason TEXT
//	choreo [connection flags] sagas retry FLOW ID
//	choreo [connection flags] sagas watch [--flow FLOW]
//	choreo [connection flags] flows diagram FLOW [VERSION]
//	choreo [connection flags] flows asyncapi [FLOW [VERSION]] [--title T] [--host HOST:PORT]
//	choreo [connection flags] dlq ls [--flow FLOW] [--last 500]
//	choreo [connection flags] dlq show SEQ
//	choreo [connection flags] dlq replay SEQ
//	choreo [connection flags] dlq purge --before TIME|AGE [--yes]
//	choreo [connection flags] doctor [--idle 30s] [--behind 1000] [--overdue 1m]
//	choreo [connection flags] console [--addr 127.0.0.1:8223]
//
// The connection flags are those of the nats CLI: --server (env
// NATS_URL), --creds, --nkey, --user with --password (env NATS_PASSWORD),
// --tlsca, --tlscert, --tlskey; --json prints JSON for scripts. A server
// that cannot be reached is a one-line error and exit status 1; a bad
// command or flag, status 2.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a bad command line: exit status 2.
type usageError string

func (u usageError) Error() string { return string(u) }

func usagef(format string, args ...any) error { return usageError(fmt.Sprintf(format, args...)) }

const usage = `usage: choreo [connection flags] COMMAND
  flows ls                                   the flow versions runners registered
  flows versions FLOW                        each version's status, sagas left, unserved steps
  flows retire FLOW VERSION (--drain | --compensate) --reason TEXT
                                             stop new sagas of a version; let those in flight
                                             finish, or compensate them
  flows reinstate FLOW VERSION               take a retirement back
  flows diagram FLOW [VERSION]               a Mermaid flowchart of a version (default the newest)
  flows asyncapi [FLOW [VERSION]] [--title T] [--host HOST:PORT]
                                             an AsyncAPI 3.0 document (JSON) of the registered
                                             flows: subjects, messages with their schemas, owners
  sagas ls [--flow FLOW] [--status S] [--version N] [--since TIME|AGE]
  sagas show FLOW ID                         state, steps and timeline
  sagas watch [--flow FLOW]                  each change of a saga, until interrupted
  sagas cancel FLOW ID --reason TEXT         compensate a running saga
  sagas retry FLOW ID                        retry a parked saga's compensations
  dlq ls [--flow FLOW] [--last 500]          the newest dead letters, with their reasons
  dlq show SEQ                               one dead letter: headers and payload
  dlq replay SEQ                             back where it was read, when it can be processed now
  dlq purge --before TIME|AGE [--yes]        remove older dead letters (asks first)
  doctor [--idle 30s] [--behind 1000] [--overdue 1m]
                                             what is wrong now, and what to do about it
  console [--addr 127.0.0.1:8223] [--allow-remote] [--allowed-hosts NAMES]
                                             the operator web console, until interrupted
connection flags: --server URL (env NATS_URL) --creds FILE --nkey FILE --user U
  (--password, env NATS_PASSWORD) --tlsca FILE --tlscert FILE --tlskey FILE
  --timeout D (default 10s) --json
`

// Exit status: 0 done, 1 an error (the server, the saga), 2 a bad command
// line, 3 doctor found something wrong.

// cli is a parsed command line and what it prints to.
type cli struct {
	out, errw io.Writer
	json      bool
	c         *saga.Client
	server    string // the --server URL
}

func run(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("choreo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	server := fs.String("server", envOr("NATS_URL", "nats://127.0.0.1:4222"), "")
	creds := fs.String("creds", "", "")
	nkey := fs.String("nkey", "", "")
	user := fs.String("user", "", "")
	password := fs.String("password", os.Getenv("NATS_PASSWORD"), "")
	tlsca := fs.String("tlsca", "", "")
	tlscert := fs.String("tlscert", "", "")
	tlskey := fs.String("tlskey", "", "")
	timeout := fs.Duration("timeout", 10*time.Second, "")
	asJSON := fs.Bool("json", false, "")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(errw, "choreo: %v\n%s", err, usage)
		return 2
	}
	rest := verbless(fs.Args())
	// --json may also follow the command (choreo sagas watch --json).
	rest = slices.DeleteFunc(rest, func(a string) bool {
		if a == "--json" || a == "-json" {
			*asJSON = true
			return true
		}
		return false
	})
	if len(rest) < 2 {
		fmt.Fprint(errw, usage)
		return 2
	}
	cmd, err := command(rest[0], rest[1])
	if err != nil {
		fmt.Fprintf(errw, "choreo: %v\n%s", err, usage)
		return 2
	}
	opts, err := connectOptions(*creds, *nkey, *user, *password, *tlsca, *tlscert, *tlskey)
	if err != nil {
		fmt.Fprintf(errw, "choreo: %v\n", err)
		return 2
	}
	if rest[0] == "sagas" && rest[1] == "watch" {
		*timeout = 0 // until interrupted
	}
	var cancel context.CancelFunc
	if *timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, *timeout)
	} else {
		ctx, cancel = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	}
	defer cancel()
	opts = append(opts, nats.Name("choreo-cli"), nats.Timeout(5*time.Second))
	nc, err := nats.Connect(*server, opts...)
	if errors.Is(err, nats.ErrAuthorization) || err != nil && strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		fmt.Fprintf(errw, "choreo: %s refused these credentials (%v): give --creds, --nkey or --user; the shop's admin key is DATA-DIR/credentials/admin.nk\n", *server, err)
		return 1
	}
	if err != nil {
		fmt.Fprintf(errw, "choreo: cannot reach %s: %v\n", *server, err)
		return 1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintf(errw, "choreo: %v\n", err)
		return 1
	}
	c, err := saga.Open(ctx, js)
	if err != nil {
		fmt.Fprintf(errw, "choreo: %s: %v\n", *server, err)
		return 1
	}
	k := &cli{out: out, errw: errw, json: *asJSON, c: c, server: *server}
	if err := cmd(ctx, k, rest[2:]); err != nil {
		if err == errFound {
			return 3
		}
		fmt.Fprintf(errw, "choreo: %v\n", err)
		if _, ok := err.(usageError); ok {
			return 2
		}
		return 1
	}
	return 0
}

// verbless gives the commands without a verb (doctor, console) the
// empty one, so that their flags follow.
func verbless(rest []string) []string {
	if len(rest) > 0 && (rest[0] == "doctor" || rest[0] == "console") {
		return append([]string{rest[0], ""}, rest[1:]...)
	}
	return rest
}

type handler func(ctx context.Context, k *cli, args []string) error

// command finds the handler of a command, or says why there is none.
func command(group, verb string) (handler, error) {
	cmds := map[string]map[string]handler{
		"flows":  {"ls": flowsLs, "versions": flowsVersions, "retire": flowsRetire, "reinstate": flowsReinstate, "diagram": flowsDiagram, "asyncapi": flowsAsyncAPI},
		"sagas":  {"ls": sagasLs, "show": sagasShow, "cancel": sagasCancel, "retry": sagasRetry, "watch": sagasWatch},
		"dlq":    {"ls": dlqLs, "show": dlqShow, "replay": dlqReplay, "purge": dlqPurge},
		"doctor": {"": doctor},

		"console": {"": consoleServe}, // console.go
	}
	g, ok := cmds[group]
	if !ok {
		return nil, usagef("unknown command %q", group)
	}
	h, ok := g[verb]
	if !ok {
		return nil, usagef("unknown command %q %q", group, verb)
	}
	return h, nil
}

// connectOptions turns the connection flags into options; the error is a
// one-line reason.
func connectOptions(creds, nkey, user, password, ca, cert, key string) ([]nats.Option, error) {
	var opts []nats.Option
	n := 0
	for _, s := range []string{creds, nkey, user} {
		if s != "" {
			n++
		}
	}
	switch {
	case n > 1:
		return nil, errors.New("give one of --creds, --nkey and --user")
	case creds != "":
		if _, err := os.Stat(creds); err != nil {
			return nil, fmt.Errorf("--creds: %v", err)
		}
		opts = append(opts, nats.UserCredentials(creds))
	case nkey != "":
		opt, err := nats.NkeyOptionFromSeed(nkey)
		if err != nil {
			return nil, fmt.Errorf("--nkey %s: %v", nkey, strings.ReplaceAll(err.Error(), "\n", " "))
		}
		opts = append(opts, opt)
	case user != "":
		if password == "" {
			return nil, errors.New("--user needs --password or NATS_PASSWORD")
		}
		opts = append(opts, nats.UserInfo(user, password))
	}
	if ca == "" && cert == "" && key == "" {
		return opts, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--tlsca: %v", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tlsca %s: no PEM certificate in it", ca)
		}
	}
	if (cert == "") != (key == "") {
		return nil, errors.New("--tlscert and --tlskey go together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--tlscert/--tlskey: %v", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return append(opts, nats.Secure(conf)), nil
}

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

func flowsLs(ctx context.Context, k *cli, args []string) error {
	if _, err := parse(flag.NewFlagSet("flows ls", flag.ContinueOnError), args, 0, "no arguments"); err != nil {
		return err
	}
	flows, err := k.c.Flows(ctx)
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
	vs, err := k.c.Versions(ctx, saga.Named(pos[0]))
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
			fmt.Fprintf(w, "v%d\t%s\t%d\t%d\t%s\t%s\n", v.Version, v.Status, v.Left(), ended, orDash(strings.Join(v.Unserved, ",")), orDash(v.Reason))
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
		return usagef("give --drain (sagas in flight finish) or --compensate (they are compensated)")
	}
	if strings.TrimSpace(*reason) == "" {
		return usagef("give --reason: it is recorded, and a compensated saga carries it")
	}
	mode := saga.Drain
	if *compensate {
		mode = saga.CompensateInFlight
	}
	rep, err := k.c.Retire(ctx, saga.Named(pos[0]), v, mode, *reason)
	if err != nil {
		return err
	}
	return k.print(rep, func(w io.Writer) {
		fmt.Fprintf(w, "%s v%d is %s: new sagas are refused.\n", rep.Flow, rep.Version, rep.Status)
		switch {
		case rep.Left() == 0:
			fmt.Fprintf(w, "No saga of v%d is in flight: its runners may go.\n", rep.Version)
		case mode == saga.Drain:
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
	if err := k.c.Reinstate(ctx, saga.Named(pos[0]), v); err != nil {
		return err
	}
	return k.print(map[string]any{"flow": pos[0], "version": v, "status": saga.VersionActive}, func(w io.Writer) {
		fmt.Fprintf(w, "%s v%d is active again.\n", pos[0], v)
	})
}

func sagasLs(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("sagas ls", flag.ContinueOnError)
	flow := fs.String("flow", "", "")
	status := fs.String("status", "", "")
	ver := fs.Int("version", 0, "")
	sinceFlag := fs.String("since", "", "")
	if _, err := parse(fs, args, 0, "only flags"); err != nil {
		return err
	}
	var statuses []saga.Status
	if *status != "" {
		st := saga.Status(*status)
		known := []saga.Status{saga.StatusRunning, saga.StatusCompleted, saga.StatusCompensating, saga.StatusCompensated, saga.StatusCompensationFailed}
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
	var list []*saga.State
	for _, name := range names {
		l, err := k.c.List(ctx, saga.Named(name), statuses...)
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
		fmt.Fprintln(w, "FLOW\tID\tVERSION\tSTATUS\tSTARTED\tREASON")
		for _, s := range list {
			fmt.Fprintf(w, "%s\t%s\tv%d\t%s\t%s\t%s\n", s.Flow, s.ID, s.Version, s.Status, s.StartedAt.Format(time.RFC3339), orDash(s.Reason))
		}
	})
}

// flowNames is the flow --flow names, or every registered flow when it
// is empty.
func flowNames(ctx context.Context, k *cli, flow string) ([]string, error) {
	if flow != "" {
		return []string{flow}, nil
	}
	flows, err := k.c.Flows(ctx)
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
		if st.TraceID != "" {
			fmt.Fprintf(w, "trace: %s\n", st.TraceID)
		}
		fmt.Fprintln(w, "STEP\tSTATUS\tATTEMPTS\tUNDO ATTEMPTS\tNOTE")
		for _, s := range st.Steps {
			note := s.Error
			if s.Waiting != "" {
				note = s.Waiting
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
	pos, err := parse(fs, args, 2, "FLOW ID")
	if err != nil {
		return err
	}
	if strings.TrimSpace(*reason) == "" {
		return usagef("give --reason: the saga carries it")
	}
	if err := k.c.Cancel(ctx, saga.Named(pos[0]), pos[1], *reason); err != nil {
		return fmt.Errorf("saga %s/%s: %w", pos[0], pos[1], err)
	}
	return k.print(map[string]string{"flow": pos[0], "id": pos[1], "status": string(saga.StatusCompensating)}, func(w io.Writer) {
		fmt.Fprintf(w, "saga %s/%s is cancelled: it compensates.\n", pos[0], pos[1])
	})
}

func sagasRetry(ctx context.Context, k *cli, args []string) error {
	pos, err := parse(flag.NewFlagSet("sagas retry", flag.ContinueOnError), args, 2, "FLOW ID")
	if err != nil {
		return err
	}
	if err := k.c.RetryCompensation(ctx, saga.Named(pos[0]), pos[1]); err != nil {
		return fmt.Errorf("saga %s/%s: %w", pos[0], pos[1], err)
	}
	return k.print(map[string]string{"flow": pos[0], "id": pos[1], "status": string(saga.StatusCompensating)}, func(w io.Writer) {
		fmt.Fprintf(w, "saga %s/%s compensates again.\n", pos[0], pos[1])
	})
}

func sagas(n int) string {
	if n == 1 {
		return "1 saga"
	}
	return strconv.Itoa(n) + " sagas"
}

func flowsDiagram(ctx context.Context, k *cli, args []string) error {
	flow, want, err := flowArgs(flag.NewFlagSet("flows diagram", flag.ContinueOnError), args, 1, "FLOW [VERSION]")
	if err != nil {
		return err
	}
	flows, err := k.c.Flows(ctx)
	if err != nil {
		return err
	}
	var found *saga.FlowInfo
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
	flows, err := k.c.Flows(ctx)
	if err != nil {
		return err
	}
	var picked []saga.FlowInfo
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
	o := saga.AsyncAPIOptions{Title: *title, Server: *host}
	if o.Server == "" {
		first, _, _ := strings.Cut(k.server, ",")
		if u, err := url.Parse(first); err == nil && u.Host != "" {
			o.Server, o.TLS = u.Host, u.Scheme == "tls"
		}
	}
	doc, err := saga.AsyncAPI(o, picked...)
	if err != nil {
		return err
	}
	_, err = k.out.Write(append(doc, '\n'))
	return err
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
			if s.Status == saga.StepRunning || s.Status == saga.StepCompensating {
				running = append(running, s.Name+":"+string(s.Status))
			}
		}
		fmt.Fprintf(k.out, "%s %s %s v%d %s %s\n", st.UpdatedAt.Format(time.RFC3339Nano), st.Flow, st.ID, st.Version, st.Status, strings.Join(running, " "))
	}
	return nil
}

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
	var dead []saga.DeadLetter
	var total uint64
	var err error
	if *flow == "" {
		// The newest --last, read without their payloads: a flood of dead
		// letters (any participant may make some) costs this no memory.
		dead, total, err = k.c.LatestDeadLetters(ctx, *last, 0)
	} else if dead, err = k.c.DeadLetters(ctx, saga.Named(*flow)); len(dead) > *last {
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
		Time     time.Time `json:"time"`
		Reason   string    `json:"reason"`
	}
	rows := make([]row, 0, len(dead))
	for _, d := range dead {
		rows = append(rows, row{d.Sequence, d.Subject, d.Consumer, d.Time, d.Reason})
	}
	return k.print(rows, func(w io.Writer) {
		fmt.Fprintln(w, "SEQ\tTIME\tSUBJECT\tREASON")
		for _, r := range rows {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", r.Sequence, r.Time.Format(time.RFC3339), r.Subject, oneLine(r.Reason, 120))
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
	d, err := k.c.DeadLetterAt(ctx, seq)
	if err != nil {
		return err
	}
	return k.print(d, func(w io.Writer) {
		fmt.Fprintf(w, "sequence:\t%d\nsubject:\t%s\nconsumer:\t%s\ntime:\t%s\nreason:\t%s\n", d.Sequence, d.Subject, d.Consumer, d.Time.Format(time.RFC3339Nano), d.Reason)
		for _, h := range slices.Sorted(maps.Keys(d.Header)) {
			fmt.Fprintf(w, "header %s:\t%s\n", h, strings.Join(d.Header[h], ", "))
		}
		fmt.Fprintf(w, "payload (%d bytes):\t%s\n", len(d.Data), oneLine(string(d.Data), 2000))
	})
}

func dlqReplay(ctx context.Context, k *cli, args []string) error {
	pos, err := parse(flag.NewFlagSet("dlq replay", flag.ContinueOnError), args, 1, "SEQ")
	if err != nil {
		return err
	}
	seq, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil {
		return usagef("SEQ %q: want the dead letter's sequence (dlq ls)", pos[0])
	}
	what, err := k.c.ReplayDeadLetter(ctx, seq)
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
	dead, err := k.c.DeadLetters(ctx, nil)
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
	purged, err := k.c.PurgeDeadLetters(ctx, before)
	if err != nil {
		return err
	}
	return k.print(map[string]any{"purged": purged}, func(w io.Writer) { fmt.Fprintf(w, "Purged %d dead letters.\n", purged) })
}

func doctor(ctx context.Context, k *cli, args []string) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	var o saga.DiagnoseOptions
	fs.DurationVar(&o.Idle, "idle", 30*time.Second, "")
	fs.Uint64Var(&o.Behind, "behind", 1000, "")
	fs.DurationVar(&o.Overdue, "overdue", time.Minute, "")
	if _, err := parse(fs, args, 0, "only flags"); err != nil {
		return err
	}
	if o.Idle <= 0 || o.Behind == 0 || o.Overdue <= 0 {
		return usagef("--idle, --behind and --overdue must be above zero")
	}
	found, err := k.c.Diagnose(ctx, o)
	if err != nil {
		return err
	}
	if found == nil {
		found = []saga.Finding{} // [] in JSON, not null
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

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
