package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// keyFile writes a key ring file of one key and returns its path.
func keyFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// With --key-file the command line reads the payloads and errors choreo
// stored encrypted; without it they show as encrypted and nothing fails;
// a bad key file is a bad flag.
func TestKeyFile(t *testing.T) {
	srv := sagatest.NewServer(t)
	keys := keyFile(t, "k1 "+base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))+"\n")
	c := srv.Client(saga.WithKeyFile(keys))
	step := saga.NewStep[Trip, Ticket]("book", saga.Owner("airline"))
	flow := saga.MustDefine[Trip]("secret", 1, step)
	r, err := saga.NewRunner(c, saga.WithValidator(func(_ string, data []byte) error {
		if strings.Contains(string(data), "Mr Refused") {
			return errors.New("refused")
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Handle(r, step, func(_ context.Context, in Trip) (Ticket, error) {
		return Ticket{}, saga.Abort(errors.New("no seat for " + in.Who))
	}, nil); err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	if err := saga.Start(context.Background(), c, flow, "s1", Trip{Who: "Ms Secret"}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, c, flow, "s1", 20*time.Second, saga.StatusCompensated)

	code, out, errs := runCLI(t, srv.ClientURL(), "sagas", "show", "secret", "s1")
	if code != 0 || strings.Contains(out, "Ms Secret") || !strings.Contains(out, "[encrypted]") {
		t.Fatalf("sagas show without the key: %d %s\n%s", code, errs, out)
	}
	golden(t, "sagas-show-encrypted.golden", out)
	code, out, errs = runCLI(t, srv.ClientURL(), "--json", "sagas", "show", "secret", "s1")
	if code != 0 || strings.Contains(out, "Ms Secret") || !strings.Contains(out, `"encrypted": true`) {
		t.Fatalf("sagas show --json without the key: %d %s\n%s", code, errs, out)
	}
	code, out, errs = runCLI(t, srv.ClientURL(), "--key-file", keys, "sagas", "show", "secret", "s1")
	if code != 0 || !strings.Contains(out, "no seat for Ms Secret") || strings.Contains(out, "[encrypted]") {
		t.Fatalf("sagas show with the key: %d %s\n%s", code, errs, out)
	}
	code, out, errs = runCLI(t, srv.ClientURL(), "--key-file", keys, "--json", "sagas", "show", "secret", "s1")
	if code != 0 || !strings.Contains(out, `"Who": "Ms Secret"`) {
		t.Fatalf("sagas show --json with the key: %d %s\n%s", code, errs, out)
	}

	// A refused input is dead-lettered sealed: dlq show opens it with the key.
	if err := saga.Start(context.Background(), c, flow, "s2", Trip{Who: "Mr Refused"}); err != nil {
		t.Fatal(err)
	}
	sagatest.AwaitStatus(t, c, flow, "s2", 20*time.Second, saga.StatusCompensated)
	code, out, errs = runCLI(t, srv.ClientURL(), "--json", "dlq", "ls", "--flow", "secret")
	var rows []struct{ Sequence uint64 }
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 {
		t.Fatalf("dlq ls: %d %s\n%s", code, errs, out)
	}
	seq := strconv.FormatUint(rows[0].Sequence, 10)
	code, out, errs = runCLI(t, srv.ClientURL(), "dlq", "show", seq)
	if code != 0 || strings.Contains(out, "Mr Refused") || !strings.Contains(out, "encrypted (key k1: give --key-file") {
		t.Errorf("dlq show without the key: %d %s\n%s", code, errs, out)
	}
	code, out, errs = runCLI(t, srv.ClientURL(), "--key-file", keys, "dlq", "show", seq)
	if code != 0 || !strings.Contains(out, `{"Who":"Mr Refused"}`) || !strings.Contains(out, "refused") {
		t.Errorf("dlq show with the key: %d %s\n%s", code, errs, out)
	}

	for _, bad := range []struct{ path, want string }{
		{filepath.Join(t.TempDir(), "none"), "no such file"},
		{keyFile(t, "k1 c2hvcnQ=\n"), "want 16, 24 or 32"},
	} {
		code, _, errs := runCLI(t, srv.ClientURL(), "--key-file", bad.path, "flows", "ls")
		if code != 2 || !strings.Contains(errs, bad.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("--key-file %s: exit %d, %q; want 2 and one line saying %q", bad.path, code, errs, bad.want)
		}
	}
}
