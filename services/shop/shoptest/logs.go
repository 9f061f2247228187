package shoptest

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
)

// LogBuffer keeps what many goroutines log: an io.Writer for
// slog.NewTextHandler, and a server.Logger for a nats-server (each line
// ends with a newline; traces are dropped). The zero value is ready.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

var _ server.Logger = (*LogBuffer)(nil)

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Len is how many bytes were written.
func (b *LogBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func (b *LogBuffer) line(format string, v ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fmt.Fprintf(&b.buf, format, v...)
	b.buf.WriteByte('\n')
}

func (b *LogBuffer) Noticef(format string, v ...any) { b.line(format, v...) }
func (b *LogBuffer) Warnf(format string, v ...any)   { b.line(format, v...) }
func (b *LogBuffer) Fatalf(format string, v ...any)  { b.line(format, v...) }
func (b *LogBuffer) Errorf(format string, v ...any)  { b.line(format, v...) }
func (b *LogBuffer) Debugf(format string, v ...any)  { b.line(format, v...) }
func (b *LogBuffer) Tracef(string, ...any)           {}
