package kit_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/choreo-go/choreo/services/kit"
)

// A bad combination or an unreadable file is a one-line error before
// anything connects; a good setting makes exactly one auth option.
func TestAuthOptions(t *testing.T) {
	dir := t.TempDir()
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(dir, "svc.nk")
	pwFile := filepath.Join(dir, "pw")
	junk := filepath.Join(dir, "junk")
	for f, data := range map[string][]byte{seedFile: seed, pwFile: []byte("s3cret\n"), junk: []byte("not a seed")} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		a       kit.Auth
		wantErr string
	}{
		{"none", kit.Auth{}, ""},
		{"nkey", kit.Auth{NKey: seedFile}, ""},
		{"user and password file", kit.Auth{User: "svc", PasswordFile: pwFile}, ""},
		{"user and env password", kit.Auth{User: "svc", Password: "s3cret"}, ""},
		{"two ways", kit.Auth{NKey: seedFile, User: "svc"}, "not several"},
		{"missing nkey file", kit.Auth{NKey: filepath.Join(dir, "nope")}, "--nkey"},
		{"not a seed", kit.Auth{NKey: junk}, "not an nkey seed"},
		{"missing creds file", kit.Auth{Creds: filepath.Join(dir, "nope.creds")}, "--creds"},
		{"user without password", kit.Auth{User: "svc"}, "needs a password"},
		{"password file without user", kit.Auth{PasswordFile: pwFile}, "needs --user"},
		{"unreadable password file", kit.Auth{User: "svc", PasswordFile: filepath.Join(dir, "nope")}, "--password-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := tc.a.Options()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			case tc.wantErr != "" && strings.Contains(err.Error(), "\n"):
				t.Fatalf("error %q is not one line", err)
			case tc.wantErr == "" && tc.a != (kit.Auth{}) && len(opts) != 1:
				t.Fatalf("%d options, want 1", len(opts))
			}
		})
	}
}
