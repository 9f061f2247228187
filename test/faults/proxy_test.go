package faults_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dupProxy stands between the services and the broker and speaks the NATS
// client protocol. Every message a durable JetStream consumer delivers
// reaches its client 2 to 5 times (the copies a little later, so that they
// overlap the first one's handling), and some of the clients' final acks
// are dropped so that the broker redelivers after the ack wait.
type dupProxy struct {
	t        testing.TB
	ln       net.Listener
	upstream string
	url      string
	copies   func() int  // how many times a delivery reaches its client
	dropAck  func() bool // whether to drop this final ack
	delay    func() time.Duration

	deliveries atomic.Int64 // JetStream deliveries seen
	extra      atomic.Int64 // extra copies sent
	dropped    atomic.Int64 // acks dropped
	wg         sync.WaitGroup
}

// An ordered consumer's name: a copy of its messages would only make it
// reset, so those are passed through once.
var orderedName = regexp.MustCompile(`^[A-Za-z0-9]{22}_[0-9]+$`)

func newDupProxy(t testing.TB, upstream string) *dupProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dupProxy{t: t, ln: ln, upstream: upstream, url: "nats://" + ln.Addr().String()}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *dupProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		out := newFrameWriter(c)
		p.wg.Add(2)
		go func() { // broker -> client
			defer p.wg.Done()
			defer c.Close()
			p.fromServer(u, out)
		}()
		go func() { // client -> broker
			defer p.wg.Done()
			defer u.Close()
			p.fromClient(c, u)
		}()
	}
}

// frameWriter writes whole protocol frames to a client, from the relay and
// from the timers of delayed copies.
type frameWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func newFrameWriter(w io.Writer) *frameWriter { return &frameWriter{w: w} }

func (f *frameWriter) write(b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return io.ErrClosedPipe
	}
	_, err := f.w.Write(b)
	if err != nil {
		f.closed = true
	}
	return err
}

// readFrame reads one protocol line and, for a message, its payload. It
// returns the whole frame, the line's fields and the payload.
func readFrame(r *bufio.Reader) (frame []byte, fields [][]byte, payload []byte, err error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, nil, nil, err
	}
	fields = bytes.Fields(line)
	if len(fields) == 0 {
		return line, fields, nil, nil
	}
	op := string(bytes.ToUpper(fields[0]))
	if op != "MSG" && op != "HMSG" && op != "PUB" && op != "HPUB" {
		return line, fields, nil, nil
	}
	size, err := strconv.Atoi(string(fields[len(fields)-1]))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bad size in %q", line)
	}
	payload = make([]byte, size+2)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, nil, nil, err
	}
	frame = append(line, payload...)
	return frame, fields, payload[:size], nil
}

// jsDelivery returns the consumer name of a JetStream delivery's reply
// subject ($JS.ACK.<stream>.<consumer>.… or, with a domain and account
// hash, $JS.ACK.<domain>.<hash>.<stream>.<consumer>.…), or "".
func jsDelivery(reply []byte) string {
	if !bytes.HasPrefix(reply, []byte("$JS.ACK.")) {
		return ""
	}
	tok := bytes.Split(reply, []byte("."))
	switch {
	case len(tok) == 9:
		return string(tok[3])
	case len(tok) >= 12:
		return string(tok[5])
	}
	return ""
}

func (p *dupProxy) fromServer(u net.Conn, out *frameWriter) {
	r := bufio.NewReaderSize(u, 64<<10)
	for {
		frame, fields, _, err := readFrame(r)
		if err != nil {
			return
		}
		n := 1
		// MSG <subject> <sid> <reply> <size>; HMSG <subject> <sid> <reply> <hsize> <size>
		if len(fields) >= 5 && (string(fields[0]) == "MSG" && len(fields) == 5 || string(fields[0]) == "HMSG" && len(fields) == 6) {
			if cons := jsDelivery(fields[3]); cons != "" && !orderedName.MatchString(cons) {
				p.deliveries.Add(1)
				n = p.copies()
			}
		}
		if err := out.write(frame); err != nil {
			return
		}
		for range n - 1 {
			p.extra.Add(1)
			time.AfterFunc(p.delay(), func() { _ = out.write(frame) })
		}
	}
}

func (p *dupProxy) fromClient(c net.Conn, u net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(u, 64<<10)
	for {
		frame, fields, payload, err := readFrame(r)
		if err != nil {
			return
		}
		// PUB $JS.ACK.… <size> with "+ACK" or nothing: a final ack.
		if len(fields) == 3 && string(fields[0]) == "PUB" && bytes.HasPrefix(fields[1], []byte("$JS.ACK.")) &&
			(len(payload) == 0 || string(payload) == "+ACK") && p.dropAck() {
			p.dropped.Add(1)
			continue
		}
		if _, err := w.Write(frame); err != nil {
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}
