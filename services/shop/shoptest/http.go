package shoptest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// Do sends a request with client (http.DefaultClient when nil) and decodes
// the JSON answer. body is sent as JSON, or as it is when it is a string;
// headers are name, value pairs. It returns the status, the decoded answer
// (nil when it is not a JSON object), the response's headers, and the
// transport's error.
func Do(client *http.Client, method, url string, body any, headers ...string) (int, map[string]any, http.Header, error) {
	if client == nil {
		client = http.DefaultClient
	}
	var r io.Reader
	if s, ok := body.(string); ok {
		r = bytes.NewBufferString(s)
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return 0, nil, nil, err
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header, nil
}

// Call is [Do] with the default client, for a test: a request that gets
// no answer (the server down) answers 0 and nil.
func Call(t testing.TB, method, url string, body any, headers ...string) (int, map[string]any) {
	t.Helper()
	code, out, _, err := Do(nil, method, url, body, headers...)
	if err != nil {
		return 0, nil
	}
	return code, out
}

// MustCall is [Call] that fails the test when the request gets no answer.
func MustCall(t testing.TB, method, url string, body any, headers ...string) (int, map[string]any) {
	t.Helper()
	code, out, _, err := Do(nil, method, url, body, headers...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return code, out
}

// JSON is v as JSON, for a failure message.
func JSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
