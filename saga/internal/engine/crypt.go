package engine

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/choreo-go/choreo/internal/wire"
)

// Payload encryption. With a key ring (WithKeyRing) choreo seals what its
// users give it before it stores it, with AES-GCM (the standard library's)
// and a random 96-bit nonce per message:
//
//   - the payload of a saga log event (a saga's input, a step's result, a
//     completion's): nonce, ciphertext and tag, with the header Choreo-Key
//     naming the key. The associated data is the event's subject, so a
//     payload cannot be moved to another saga, step or phase: it would not
//     open there.
//   - the text of an error a handler returned (and the validator's
//     refusal), which the saga's state carries in Error, CompensationError
//     and Reason: a token "encrypted:<key id>:<base64url of nonce,
//     ciphertext and tag>" inside the text, bound to the saga
//     (flow.id). The state's check (check.go) copies the text of an error
//     from the event it checks, so it needs no key: it works on sealed text
//     as on plain.
//   - the copy of a step's input a dead letter keeps, bound to the subject
//     the dead letter names (Choreo-Dlq-Subject), which is where a replay
//     publishes it.
//
// Everything choreo derives (states, statuses, times, attempts, names,
// subjects) stays in clear: the broker routes and checks by it. Readers
// open what they are given keys for; a payload sealed with a key they lack
// reads as "encrypted".

// sealPrefix starts a sealed text; unsealed shows in its place for a
// reader without the key.
const (
	sealPrefix = "encrypted:"
	unsealed   = "[encrypted]"
)

// A Key is one key of a key ring: an id, a subject-token name written on
// every message it seals, and an AES key of 16, 24 or 32 bytes.
type Key struct {
	ID     string
	Secret []byte
}

// KeyRing holds the keys that seal and open payloads. The first key seals
// what is written; every key opens what it sealed, so that a rotation
// puts a new key first and keeps the old ones until nothing they sealed
// is kept (the sagas' retention).
type KeyRing struct {
	ids   []string
	aeads map[string]cipher.AEAD
}

// NewKeyRing makes a key ring of keys, the first one the key that seals.
// It returns an error wrapping ErrKeyRing for no key, a repeated id, an
// id that is not 1 to 64 characters of [A-Za-z0-9_-], or a key that is
// not 16, 24 or 32 bytes long.
func NewKeyRing(keys ...Key) (*KeyRing, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no key", ErrKeyRing)
	}
	r := &KeyRing{aeads: make(map[string]cipher.AEAD, len(keys))}
	for _, k := range keys {
		if !wire.Token(k.ID) {
			return nil, fmt.Errorf("%w: key id %q is not 1 to 64 characters of [A-Za-z0-9_-]", ErrKeyRing, k.ID)
		}
		if _, dup := r.aeads[k.ID]; dup {
			return nil, fmt.Errorf("%w: key id %q twice", ErrKeyRing, k.ID)
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q is %d bytes, want 16, 24 or 32", ErrKeyRing, k.ID, len(k.Secret))
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %v", ErrKeyRing, k.ID, err)
		}
		r.ids = append(r.ids, k.ID)
		r.aeads[k.ID] = aead
	}
	return r, nil
}

// ParseKeyRing reads a key ring file's text: one key a line, its id and
// its secret in standard base64, separated by white space; blank lines
// and lines starting with '#' are skipped. The first key seals. Errors
// wrap ErrKeyRing and name the line.
func ParseKeyRing(text []byte) (*KeyRing, error) {
	var keys []Key
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("%w: line %d: want \"<id> <base64 key>\", got %d fields", ErrKeyRing, n, len(f))
		}
		secret, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: key %q is not standard base64", ErrKeyRing, n, f[0])
		}
		keys = append(keys, Key{ID: f[0], Secret: secret})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyRing, err)
	}
	r, err := NewKeyRing(keys...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// LoadKeyRing reads a key ring file (ParseKeyRing). Its errors are one
// line that names the file.
func LoadKeyRing(path string) (*KeyRing, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyRing, err)
	}
	r, err := ParseKeyRing(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// IDs returns the ids of the ring's keys, the one that seals first.
func (r *KeyRing) IDs() []string { return append([]string(nil), r.ids...) }

// seal encrypts plain with the ring's first key, bound to ad, and
// returns the key's id and nonce, ciphertext and tag.
func (r *KeyRing) seal(plain []byte, ad string) (string, []byte) {
	id := r.ids[0]
	aead := r.aeads[id]
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic("choreo: no randomness for a nonce: " + err.Error()) // crypto/rand never fails on supported systems
	}
	return id, aead.Seal(out, out, plain, []byte(ad))
}

// open decrypts what seal returned with key id, bound to ad.
func (r *KeyRing) open(id string, sealed []byte, ad string) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: it is sealed with key %q and no key ring is given", ErrNoKey, id)
	}
	aead := r.aeads[id]
	if aead == nil {
		return nil, fmt.Errorf("%w: it is sealed with key %q, not in the ring (%s)", ErrNoKey, id, strings.Join(r.ids, ", "))
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: %d bytes, too short", ErrUnsealable, len(sealed))
	}
	n := aead.NonceSize()
	plain, err := aead.Open(nil, sealed[:n], sealed[n:], []byte(ad))
	if err != nil {
		return nil, fmt.Errorf("%w: key %q does not open it here (altered, or moved from another saga)", ErrUnsealable, id)
	}
	return plain, nil
}

// sealData seals the payload of a message on subject: the key id for the
// Choreo-Key header (none without a ring or for an empty payload) and the
// payload to store.
func sealData(r *KeyRing, subject string, data []byte) (string, []byte) {
	if r == nil || len(data) == 0 {
		return "", data
	}
	return r.seal(data, subject)
}

// openData returns the plain payload of a message on subject with headers
// h: data itself when it is not sealed (written before a ring was given).
func openData(r *KeyRing, h nats.Header, subject string, data []byte) ([]byte, error) {
	id := keyOf(h)
	if id == "" {
		return data, nil
	}
	return r.open(id, data, subject)
}

// keyOf returns the key id a message's payload is sealed with, or "".
func keyOf(h nats.Header) string {
	if v := h[wire.Key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// textBinding is what a sealed text of a saga is bound to.
func textBinding(flow, id string) string { return flow + "." + id }

// sealText returns text sealed into one token bound to the saga flow/id.
func sealText(r *KeyRing, flow, id, text string) string {
	if r == nil || text == "" {
		return text
	}
	kid, sealed := r.seal([]byte(text), textBinding(flow, id))
	return sealPrefix + kid + ":" + base64.RawURLEncoding.EncodeToString(sealed)
}

// openText replaces every sealed token in text with its plain text, or
// with "[encrypted]" when r cannot open it.
func openText(r *KeyRing, flow, id, text string) string {
	if !strings.Contains(text, sealPrefix) {
		return text
	}
	var b strings.Builder
	for {
		i := strings.Index(text, sealPrefix)
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		b.WriteString(text[:i])
		rest := text[i+len(sealPrefix):]
		kid, end := tokenRun(rest)
		if end >= len(rest) || rest[end] != ':' {
			b.WriteString(sealPrefix) // not a token after all
			text = rest
			continue
		}
		enc, n := tokenRun(rest[end+1:])
		text = rest[end+1+n:]
		sealed, err := base64.RawURLEncoding.DecodeString(enc)
		var plain []byte
		if err == nil {
			plain, err = r.open(kid, sealed, textBinding(flow, id))
		}
		if err != nil {
			b.WriteString(unsealed)
			continue
		}
		b.Write(plain)
	}
}

// tokenRun returns the run of [A-Za-z0-9_-] s starts with, and its length.
func tokenRun(s string) (string, int) {
	n := 0
	for n < len(s) && wire.IDChars(s[n:n+1]) {
		n++
	}
	return s[:n], n
}

// openState returns st with its sealed texts opened (or shown as
// "[encrypted]"): st itself when it has none.
func openState(r *KeyRing, st *State) *State {
	if st == nil || !stateSealed(st) {
		return st
	}
	v := st.clone()
	v.Reason = openText(r, st.Flow, st.ID, v.Reason)
	for i := range v.Steps {
		s := &v.Steps[i]
		s.Error = openText(r, st.Flow, st.ID, s.Error)
		s.CompensationError = openText(r, st.Flow, st.ID, s.CompensationError)
	}
	return v
}

func stateSealed(st *State) bool {
	if strings.Contains(st.Reason, sealPrefix) {
		return true
	}
	for i := range st.Steps {
		if strings.Contains(st.Steps[i].Error, sealPrefix) || strings.Contains(st.Steps[i].CompensationError, sealPrefix) {
			return true
		}
	}
	return false
}

// sealedError is a handler's error whose text is sealed: what the saga's
// state records of it. It unwraps to the handler's error, so that the
// decisions taken on it (Abort, Later, undecodable) are the same.
type sealedError struct {
	err  error
	text string
}

func (e *sealedError) Error() string { return e.text }
func (e *sealedError) Unwrap() error { return e.err }

// sealError returns err with its text sealed for the saga flow/id: err
// itself without a ring.
func sealError(r *KeyRing, flow, id string, err error) error {
	if r == nil || err == nil {
		return err
	}
	var done *sealedError
	if errors.As(err, &done) {
		return err
	}
	return &sealedError{err: err, text: sealText(r, flow, id, err.Error())}
}

// sealCopy seals a plain payload that a dead letter copies beside the
// headers h of the message it was read from (on subject): the headers
// then name the key that sealed the copy. Without a ring it returns them
// as they are.
func sealCopy(r *KeyRing, h nats.Header, subject string, plain []byte) (nats.Header, []byte) {
	key, data := sealData(r, subject, plain)
	if key == "" && keyOf(h) == "" {
		return h, data
	}
	c := make(nats.Header, len(h)+1)
	for k, v := range h {
		c[k] = v
	}
	delete(c, wire.Key)
	if key != "" {
		c[wire.Key] = []string{key}
	}
	return c, data
}
