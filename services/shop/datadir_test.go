package shop_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga/sagatest"
	"github.com/choreo-go/choreo/services/shop"
	"github.com/choreo-go/choreo/services/shop/shoptest"
)

// DATA-DIR holds the identities' seeds, the key that signs customers'
// tokens, the broker's store and the e-mails (names and addresses): the
// shop creates it and every directory in it 0700, and every file in it is
// its owner's alone, the credentials 0600. Another user of the machine
// reads nothing of it.
func TestDataDirIsTheOwnersAlone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // the shop creates it
	sh := shoptest.RunShop(t, shop.Config{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: dir})
	shoptest.AwaitHealth(t, sh.Base, 200, "")
	shoptest.Register(t, sh.Base, "Ada", "FR") // a welcome e-mail is written
	mail := filepath.Join(dir, "mail")
	sagatest.Poll(t, 30*time.Second, func() bool {
		entries, _ := os.ReadDir(mail)
		for _, e := range entries {
			if e.Type().IsRegular() && e.Name()[0] != '.' {
				return true
			}
		}
		return false
	}, func() string { return "no e-mail written in " + mail })
	if err := sh.Stop(); err != nil {
		t.Fatal(err)
	}

	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		perm := info.Mode().Perm()
		switch {
		case d.IsDir():
			if perm != 0o700 {
				t.Errorf("directory %s is %#o, want 0700", rel, perm)
			}
		case filepath.Dir(rel) == "credentials":
			if perm != 0o600 {
				t.Errorf("credential file %s is %#o, want 0600", rel, perm)
			}
		case perm&0o077 != 0:
			t.Errorf("file %s is %#o: others may read it", rel, perm)
		}
		seen[filepath.Dir(rel)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".", "credentials", "mail", "jetstream"} {
		if !seen[want] {
			t.Errorf("nothing in %s: the test did not see what it checks", want)
		}
	}
	creds, _ := os.ReadDir(filepath.Join(dir, "credentials"))
	if len(creds) < len(shop.Services)+2 { // a seed per service, the admin's, the token key
		t.Errorf("credentials holds %d files, want a seed per identity and the token key", len(creds))
	}
}
