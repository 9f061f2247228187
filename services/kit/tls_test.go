package kit_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/choreo-go/choreo/internal/testcert"
	"github.com/choreo-go/choreo/services/kit"
)

// What --tls-ca, --tls-cert and --tls-key build, and the one-line errors
// that stop a service for a bad file.
func TestClientTLS(t *testing.T) {
	certs := testcert.New(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := kit.ClientTLS("", "", ""); c != nil || err != nil {
		t.Errorf("no files: %v, %v; want no TLS configuration", c, err)
	}
	c, err := kit.ClientTLS(certs.CA, certs.ClientCert, certs.ClientKey)
	if err != nil || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Fatalf("ClientTLS = %+v, %v", c, err)
	}
	for _, tc := range []struct {
		name, ca, cert, key, want string
	}{
		{"unreadable CA", "/nonexistent.pem", "", "", "--tls-ca: open /nonexistent.pem"},
		{"CA not PEM", notPEM, "", "", "no PEM certificate"},
		{"cert without key", certs.CA, certs.ClientCert, "", "go together"},
		{"key without cert", "", "", certs.ClientKey, "go together"},
		{"mismatched key", certs.CA, certs.ClientCert, certs.ServerKey, "private key does not match"},
		{"unreadable cert", "", "/nonexistent-cert.pem", certs.ClientKey, "/nonexistent-cert.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kit.ClientTLS(tc.ca, tc.cert, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("ClientTLS = %v, want one line about %q", err, tc.want)
			}
		})
	}
}
