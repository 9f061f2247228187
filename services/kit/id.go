package kit

import "github.com/nats-io/nuid"

// NewID returns a new identifier with the prefix: prefix-NUID. NUIDs are
// base62 and only unique as they are (never change their case).
func NewID(prefix string) string { return prefix + "-" + nuid.Next() }
