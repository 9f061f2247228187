package saga

import "github.com/choreo-go/choreo/saga/internal/engine"

// A KeyRing seals the payloads choreo stores (WithKeyRing): its first key
// encrypts what is written, and every key decrypts what it encrypted, so
// that a rotation puts a new key first and keeps the old ones for as long
// as anything they sealed is kept (the sagas' retention).
//
// What is sealed, with AES-GCM and a random 96-bit nonce per message: the
// payload of every saga log event (a saga's input, each step's result, a
// completion's), bound to the event's subject (the saga, step and phase)
// so that a payload moved elsewhere does not open; the text of the errors
// handlers return (and the validator's refusals), which the saga's state
// records, bound to the saga; and the copy of a step's input a dead
// letter keeps. What choreo derives stays in clear (statuses, times,
// attempts, names, subjects): the broker routes and checks by it, and the
// check of every event (WithUncheckedEvents) works without the key. The
// domain events of package events are the publisher's, in clear: a
// domain event a step completes on is sealed once it is the step's
// result in the saga log.
type KeyRing = engine.KeyRing

// A Key is one key of a key ring: ID, 1 to 64 characters of
// [A-Za-z0-9_-] written on every message it seals (the Choreo-Key
// header, or inside a sealed text), and Secret, an AES key of 16, 24 or 32
// bytes.
type Key = engine.Key

// NewKeyRing makes a key ring of keys, the first one the key that seals.
// It returns an error wrapping ErrKeyRing for no key, a repeated or
// malformed id, or a secret that is not 16, 24 or 32 bytes long.
func NewKeyRing(keys ...Key) (*KeyRing, error) { return engine.NewKeyRing(keys...) }

// ParseKeyRing reads a key ring file's text: one key a line, its id and
// its secret in standard base64 separated by white space (blank lines and
// lines starting with '#' are skipped); the first key seals. Its errors
// wrap ErrKeyRing and name the line.
//
//	# newest first: k2 seals, k1 still opens what it sealed
//	k2 q1uyLkL2Gm4VaB5Jc0ZzYqvK1bVQhX3n3HqKZbpCq3U=
//	k1 3m8rj2y0xY2s9iY1nq0m9hYFq6x4l0cG2b1V7uJm1lA=
func ParseKeyRing(text []byte) (*KeyRing, error) { return engine.ParseKeyRing(text) }

// LoadKeyRing reads a key ring file (ParseKeyRing); its error is one line
// naming the file and what is wrong with it.
func LoadKeyRing(path string) (*KeyRing, error) { return engine.LoadKeyRing(path) }

// WithKeyRing seals the payloads this client and its runners store with
// the ring's first key and opens those sealed with any of its keys (see
// KeyRing). Handlers see plain values. Give every client and runner of a
// deployment the same ring: one without it reads sealed payloads as
// "encrypted" (Event.Encrypted, "[encrypted]" in an error's text) and
// cannot run a step whose input is sealed (the delivery waits and is
// tried again, logged with ErrNoKey).
func WithKeyRing(r *KeyRing) Option { return engine.WithKeyRing(r) }

// WithKeyFile is WithKeyRing with the ring read from a file (LoadKeyRing):
// New's error for a bad file is one line naming it.
func WithKeyFile(path string) Option { return engine.WithKeyFile(path) }
