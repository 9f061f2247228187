package notification_test

import (
	"bytes"
	"io"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/schemas"
	"github.com/choreo-go/choreo/services/notification"
)

// An e-mail's headers are exactly these, whatever the customer's name or
// the subject hold.
var wantHeaders = []string{"Content-Type", "Date", "From", "Message-Id", "Mime-Version", "Subject", "To"}

func TestComposeKeepsNamesInsideTheirHeader(t *testing.T) {
	for _, tc := range []struct{ what, name, subject string }{
		{"plain", "Ada Lovelace", "Welcome"},
		{"CRLF Bcc in the name", "Eve\r\nBcc: victim@example.com", "Welcome"},
		{"LF Bcc in the name", "Eve\nBcc: victim@example.com", "Welcome"},
		{"CR in the name", "Eve\rBcc: victim@example.com", "Welcome"},
		{"a body from the name", "Eve\r\n\r\nClick http://evil.example", "Welcome"},
		{"a quote and angle brackets", `Eve" <victim@example.com>, "x`, "Welcome"},
		{"CRLF Bcc in the subject", "Ada", "Hi\r\nBcc: victim@example.com"},
		{"non-ASCII", "Zoë 山田", "Grüße"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			to := schemas.CustomerRegistered{CustomerID: "cus-1", Name: tc.name, Email: "ada@example.com"}
			raw, err := notification.Compose(to, tc.subject, "Hello "+tc.name+",\n\nbye\n", "welcome-cus-1", time.Unix(0, 0))
			if err != nil {
				t.Fatal(err)
			}
			msg, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("unreadable e-mail: %v\n%s", err, raw)
			}
			var got []string
			for k := range msg.Header {
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, wantHeaders) {
				t.Errorf("headers %v, want %v\n%s", got, wantHeaders, raw)
			}
			rcpts, err := msg.Header.AddressList("To")
			if err != nil || len(rcpts) != 1 || rcpts[0].Address != "ada@example.com" || rcpts[0].Name != tc.name {
				t.Errorf("To = %v, %v; want one recipient, ada@example.com named %q\n%s", rcpts, err, tc.name, raw)
			}
			if dec, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil || dec != tc.subject {
				t.Errorf("Subject decodes to %q, %v; want %q", dec, err, tc.subject)
			}
			body, _ := io.ReadAll(msg.Body)
			if !strings.HasPrefix(string(body), "Hello ") {
				t.Errorf("body does not start with the greeting:\n%q", body)
			}
		})
	}
}

func TestComposeRefusesAnUnusableAddress(t *testing.T) {
	for _, email := range []string{"victim@example.com\r\nBcc: x@example.com", "not an address", ""} {
		to := schemas.CustomerRegistered{CustomerID: "cus-1", Name: "Eve", Email: email}
		if raw, err := notification.Compose(to, "Welcome", "Hello", "welcome-cus-1", time.Unix(0, 0)); err == nil {
			t.Errorf("address %q accepted:\n%s", email, raw)
		}
	}
}
