package kit

import (
	"flag"
	"os"

	"github.com/nats-io/nats.go"
)

// AuthFlags adds to fs the flags by which a process authenticates to the
// nats-server, as Main takes them: --creds, --nkey, --user and
// --password-file (the password also from CHOREO_NATS_PASSWORD). The
// function it returns, called once fs is parsed, checks them and returns
// the connection options (none when no flag is given); its error is one
// line.
func AuthFlags(fs *flag.FlagSet) func() ([]nats.Option, error) {
	var a Auth
	fs.StringVar(&a.Creds, "creds", envOr("CHOREO_NATS_CREDS", ""), "a NATS credentials (.creds) file (env CHOREO_NATS_CREDS)")
	fs.StringVar(&a.NKey, "nkey", envOr("CHOREO_NATS_NKEY", ""), "an nkey seed file (env CHOREO_NATS_NKEY)")
	fs.StringVar(&a.User, "user", envOr("CHOREO_NATS_USER", ""), "a NATS user; its password from env CHOREO_NATS_PASSWORD or --password-file (env CHOREO_NATS_USER)")
	fs.StringVar(&a.PasswordFile, "password-file", "", "a file holding the --user's password")
	return func() ([]nats.Option, error) {
		a.Password, a.passwordSet = os.LookupEnv("CHOREO_NATS_PASSWORD")
		return a.Options()
	}
}
