package embedded

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

// SeedFile is where an identity's nkey seed is kept in a credentials
// directory: a file the nats CLI takes (nats --nkey FILE) and nats.go
// reads (nats.NkeyOptionFromSeed).
func SeedFile(dir, name string) string { return filepath.Join(dir, name+".nk") }

// Credentials returns one nkey user key pair per name, reading the seed
// files in dir, or creating those that are missing (mode 0600, the
// directory 0700): the first start generates them, a restart reuses them.
func Credentials(dir string, names []string) (map[string]nkeys.KeyPair, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	out := map[string]nkeys.KeyPair{}
	for _, name := range names {
		path := SeedFile(dir, name)
		seed, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			kp, cerr := nkeys.CreateUser()
			if cerr != nil {
				return nil, fmt.Errorf("credentials: %w", cerr)
			}
			seed, _ = kp.Seed()
			f, ferr := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if ferr != nil {
				return nil, fmt.Errorf("credentials: %w", ferr)
			}
			_, werr := f.Write(append(seed, '\n'))
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				return nil, fmt.Errorf("credentials: %s: %w", path, werr)
			}
		} else if err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
		kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
		if err != nil {
			return nil, fmt.Errorf("credentials: %s: not an nkey seed: %v", path, err)
		}
		if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicUserKey(pub) {
			return nil, fmt.Errorf("credentials: %s: not a user nkey seed", path)
		}
		out[name] = kp
	}
	return out, nil
}
