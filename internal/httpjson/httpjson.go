// Package httpjson answers HTTP requests in JSON and reads their JSON
// bodies, the same way for every handler of the module: the operator
// console (saga/console) and the shop's gateway.
package httpjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"unicode/utf8"
)

// ContentType is the Content-Type of every answer Write makes.
const ContentType = "application/json; charset=utf-8"

// MaxBody is the largest body Decode reads: 64 KiB.
const MaxBody = 64 << 10

// Write answers with status and v as JSON. encoding/json escapes <, > and
// & in strings, so nothing a client or the broker wrote reads as markup,
// even if sniffed.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error answers with status and {"error": msg}.
func Error(w http.ResponseWriter, status int, msg string) {
	Write(w, status, map[string]string{"error": msg})
}

// Decode reads r's body into v strictly: one JSON value, no unknown
// fields, valid UTF-8 (encoding/json would quietly replace bad bytes),
// MaxBody at most. When it cannot, it has answered with Error (413 for a
// body too big, 408 for one still arriving after the server's read
// timeout, 400 for the rest) and returns false.
func Decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooBig):
		Error(w, http.StatusRequestEntityTooLarge, "the body is over 64 KiB")
		return false
	case errors.As(err, &netErr) && netErr.Timeout():
		Error(w, http.StatusRequestTimeout, "the body came too slowly")
		return false
	case err != nil:
		Error(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return false
	case !utf8.Valid(body):
		Error(w, http.StatusBadRequest, "the body is not valid UTF-8")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		Error(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return false
	}
	if dec.More() {
		Error(w, http.StatusBadRequest, "bad JSON: one object expected")
		return false
	}
	return true
}
