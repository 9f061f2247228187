// Command choreo is the operator's command line of choreo: it looks at
// sagas and flow versions in a running system and acts on them, through
// the saga package's public API, without being compiled with the flows
// (runners register the definitions they serve in the broker).
//
//	choreo [connection flags] flows ls
//	choreo [connection flags] flows versions FLOW
//	choreo [connection flags] flows retire FLOW VERSION (--drain | --compensate) --reason TEXT
//	choreo [connection flags] flows reinstate FLOW VERSION
//	choreo [connection flags] sagas ls [--flow FLOW] [--status S] [--version N] [--since TIME|AGE] [--where ATTR=V ...]
//	choreo [connection flags] sagas show FLOW ID
//	choreo [connection flags] sagas cancel FLOW ID --reason TEXT
//	choreo [connection flags] sagas retry FLOW ID
//	choreo [connection flags] sagas pause FLOW ID --reason TEXT
//	choreo [connection flags] sagas resume FLOW ID [--reason TEXT]
//	choreo [connection flags] sagas (cancel|retry|pause|resume) --all FILTER --reason TEXT [--dry-run] [--rate N]
//	choreo [connection flags] flows pause FLOW VERSION [STEP] --reason TEXT [--until TIME|DURATION]
//	choreo [connection flags] flows resume FLOW VERSION [STEP]
//	choreo [connection flags] flows paused [--flow FLOW]
//	choreo [connection flags] bulk ls | bulk show ID | bulk stop ID
//	choreo [connection flags] sagas watch [--flow FLOW]
//	choreo [connection flags] flows diagram FLOW [VERSION]
//	choreo [connection flags] flows asyncapi [FLOW [VERSION]] [--title T] [--host HOST:PORT]
//	choreo [connection flags] dlq ls [--flow FLOW] [--last 500]
//	choreo [connection flags] dlq show SEQ
//	choreo [connection flags] dlq replay SEQ
//	choreo [connection flags] dlq replay --all FILTER --reason TEXT [--dry-run] [--rate N]
//	choreo [connection flags] dlq purge --before TIME|AGE [--yes]
//	choreo [connection flags] doctor [--idle 30s] [--behind 1000] [--overdue 1m]
//	choreo [connection flags] console [--addr 127.0.0.1:8223]
//
// The connection flags are those of the nats CLI: --server (env
// NATS_URL), --creds, --nkey, --user with --password (env NATS_PASSWORD),
// --tlsca, --tlscert, --tlskey; --identity NAME (env CHOREO_IDENTITY),
// the name of the identity the credentials are (a service's: the CLI then
// takes its inbox prefix, under which alone it may receive; not needed
// for the admin); --json prints JSON for scripts. A server
// that cannot be reached is a one-line error and exit status 1; a bad
// command or flag, status 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
	"github.com/choreo-go/choreo/saga/ops"
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
                                             stop new sagas of a version (starts of it are
                                             refused, never moved to another version);
                                             --drain: those in flight finish on it (it reads
                                             draining, then drained with the time);
                                             --compensate: those not past their pivot are
                                             cancelled and compensate (it reads retired)
  flows reinstate FLOW VERSION               take a retirement back
  flows pause FLOW VERSION [STEP] --reason TEXT [--until TIME|DURATION]
                                             stop delivering a version's (or a step's) triggers:
                                             they wait in the broker, no attempt spent, through
                                             runner restarts; compensations go on
  flows resume FLOW VERSION [STEP]           deliver them again, where they stopped
  flows paused [--flow FLOW]                 the pauses, with who, when and why
  flows diagram FLOW [VERSION]               a Mermaid flowchart of a version (default the newest)
  flows asyncapi [FLOW [VERSION]] [--title T] [--host HOST:PORT]
                                             an AsyncAPI 3.0 document (JSON) of the registered
                                             flows: subjects, messages with their schemas, owners
  sagas ls [--flow FLOW] [--status S] [--version N] [--since TIME|AGE]
           [--where COND]...                 sagas; --where (repeatable, all must hold) on the
                                             flows' search attributes: customer=c-123, total>100
                                             (= != > >= < <=), read from the search index
  sagas show FLOW ID                         state, steps and timeline
  sagas watch [--flow FLOW]                  each change of a saga, until interrupted
  sagas cancel FLOW ID --reason TEXT         compensate a running saga, or stop a scheduled one
  sagas retry FLOW ID                        retry a parked saga's compensations
  sagas pause FLOW ID --reason TEXT          hold the steps a saga triggers from now on
  sagas resume FLOW ID [--reason TEXT]       run its held steps
  sagas (cancel|retry|pause|resume) --all FILTER --reason TEXT [--dry-run] [--rate N]
                                             act on every saga the filter selects, at most N
                                             a second (default 200), each act in the saga's
                                             log with the bulk act's id; --dry-run counts and
                                             shows a sample. FILTER: --flow F --version N
                                             --status S[,S] --step S --since T|AGE
                                             --before T|AGE --where ATTR=V (repeatable)
  bulk ls | bulk show ID | bulk stop ID      the bulk acts, with their outcomes; stop one
  dlq ls [--flow FLOW] [--last 500]          the newest dead letters, with their reasons
  dlq show SEQ                               one dead letter: headers and payload
  dlq replay SEQ                             back where it was read, when it can be processed now
  dlq replay --all FILTER --reason TEXT      replay the dead letters of every saga selected
  dlq purge --before TIME|AGE [--yes]        remove older dead letters (asks first)
  doctor [--idle 30s] [--behind 1000] [--overdue 1m]
                                             what is wrong now, and what to do about it
  console [--addr 127.0.0.1:8223] [--allow-remote] [--allowed-hosts NAMES]
                                             the operator web console, until interrupted
connection flags: --server URL (env NATS_URL) --creds FILE --nkey FILE --user U
  (--password, env NATS_PASSWORD) --tlsca FILE --tlscert FILE --tlskey FILE
  --identity NAME (env CHOREO_IDENTITY: a service identity's name, for its inbox)
  --key-file FILE (env CHOREO_KEY_FILE: the key ring that opens encrypted payloads;
  without it they show as "encrypted") --timeout D (default 10s) --json
`

// Exit status: 0 done, 1 an error (the server, the saga), 2 a bad command
// line, 3 doctor found something wrong.

// cli is a parsed command line and what it prints to.
type cli struct {
	out, errw io.Writer
	json      bool
	c         *saga.Client
	op        *ops.Client
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
	identity := fs.String("identity", os.Getenv("CHOREO_IDENTITY"), "")
	keyFile := fs.String("key-file", os.Getenv("CHOREO_KEY_FILE"), "")
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
	var sagaOpts []saga.Option
	if *keyFile != "" {
		ring, err := saga.LoadKeyRing(*keyFile)
		if err != nil {
			fmt.Fprintf(errw, "choreo: --key-file: %v\n", err)
			return 2
		}
		sagaOpts = append(sagaOpts, saga.WithKeyRing(ring))
	}
	if rest[0] == "sagas" && rest[1] == "watch" {
		*timeout = 0 // until interrupted
	}
	if isAll(rest) && !slices.Contains(rest, "--dry-run") && !slices.Contains(rest, "-dry-run") {
		*timeout = 0 // a bulk act: until done, or interrupted (it then reads stopped)
	}
	var cancel context.CancelFunc
	if *timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, *timeout)
	} else {
		ctx, cancel = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	}
	defer cancel()
	if *identity != "" {
		// A service's identity may subscribe only under its own inbox.
		opts = append(opts, nats.CustomInboxPrefix(access.InboxPrefix(*identity)))
	}
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
	c, err := saga.Open(ctx, js, sagaOpts...)
	if err != nil {
		fmt.Fprintf(errw, "choreo: %s: %v\n", *server, err)
		return 1
	}
	op, err := ops.Open(ctx, js, sagaOpts...)
	if err != nil {
		fmt.Fprintf(errw, "choreo: %s: %v\n", *server, err)
		return 1
	}
	k := &cli{out: out, errw: errw, json: *asJSON, c: c, op: op, server: *server}
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
		"flows": {"ls": flowsLs, "versions": flowsVersions, "retire": flowsRetire, "reinstate": flowsReinstate, "diagram": flowsDiagram, "asyncapi": flowsAsyncAPI,
			"pause": flowsPause, "resume": flowsResume, "paused": flowsPaused},
		"sagas": {"ls": sagasLs, "show": sagasShow, "cancel": sagasCancel, "retry": sagasRetry, "watch": sagasWatch,
			"pause": sagasPause, "resume": sagasResume},
		"bulk":   {"ls": bulkLs, "show": bulkShow, "stop": bulkStop}, // bulk.go
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

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
