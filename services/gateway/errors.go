package gateway

import "errors"

// ErrInvalidOption is returned by Run when an option's value is out of
// range.
var ErrInvalidOption = errors.New("invalid option")
