package kit

import "errors"

// ErrNotFound is returned for a key that has no value.
var ErrNotFound = errors.New("not found")

// BadRequest is a refusal to pass back to the caller of an endpoint.
type BadRequest struct{ Msg string }

func (b BadRequest) Error() string { return b.Msg }

// Unavailable is a refusal because something the service needs is
// missing or unreachable: the caller may try again later.
type Unavailable struct{ Msg string }

func (u Unavailable) Error() string { return u.Msg }

// Conflict is a refusal because the request contradicts what the service
// already has under the same name: an idempotency key reused for another
// order. Trying again cannot help.
type Conflict struct{ Msg string }

func (c Conflict) Error() string { return c.Msg }
