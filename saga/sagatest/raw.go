package sagatest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// PublishRaw publishes body on subject with hdr as its header block,
// written by hand over a plain TCP connection to the server at url, as a
// broken client would: nats.go cannot send a header block that is not one.
// Use it to check that your services dead-letter such messages.
func PublishRaw(tb testing.TB, url, subject, hdr, body string) {
	tb.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "nats://"))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	if _, err := conn.Read(buf); err != nil { // INFO
		tb.Fatal(err)
	}
	cmd := fmt.Sprintf("CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\nHPUB %s %d %d\r\n%s%s\r\nPING\r\n",
		subject, len(hdr), len(hdr)+len(body), hdr, body)
	if _, err := conn.Write([]byte(cmd)); err != nil {
		tb.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "PONG") {
		tb.Fatalf("sagatest: raw publish: %q %v", buf[:n], err)
	}
}
