package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

//go:embed json/*.schema.json
var schemaFiles embed.FS

var compiled = map[string]*jsonschema.Schema{}

var english = message.NewPrinter(language.English)

func init() {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	names := make([]string, 0, len(Types))
	for name := range Types {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		raw, err := schemaFiles.ReadFile("json/" + name + ".schema.json")
		if err != nil {
			panic(fmt.Sprintf("schemas: no schema for %s", name))
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			panic(fmt.Sprintf("schemas: %s: %v", name, err))
		}
		url := "https://choreo.dev/schemas/" + name + ".schema.json"
		if err := c.AddResource(url, doc); err != nil {
			panic(fmt.Sprintf("schemas: %s: %v", name, err))
		}
		s, err := c.Compile(url)
		if err != nil {
			panic(fmt.Sprintf("schemas: %s: %v", name, err))
		}
		compiled[name] = s
	}
}

// Schema returns the raw JSON Schema of an event type.
func Schema(eventType string) ([]byte, error) {
	return schemaFiles.ReadFile("json/" + eventType + ".schema.json")
}

// Validate checks an event's JSON payload against the schema of its type.
// An unknown type is an error too.
func Validate(eventType string, data []byte) error {
	s, ok := compiled[eventType]
	if !ok {
		return fmt.Errorf("unknown event type %q", eventType)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if err := s.Validate(doc); err != nil {
		var ve *jsonschema.ValidationError
		if ok := asValidation(err, &ve); ok {
			return fmt.Errorf("%s", firstLeaf(ve))
		}
		return err
	}
	return nil
}

func asValidation(err error, out **jsonschema.ValidationError) bool {
	ve, ok := err.(*jsonschema.ValidationError)
	if ok {
		*out = ve
	}
	return ok
}

// firstLeaf is the most specific message of a validation error, one line.
func firstLeaf(ve *jsonschema.ValidationError) string {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	loc := "/" + strings.Join(ve.InstanceLocation, "/")
	return loc + ": " + maskDigits(ve.ErrorKind.LocalizedString(english))
}

var longDigits = regexp.MustCompile(`[0-9]{9,}`)

// maskDigits hides all but the last four of every run of nine digits or
// more: a message quotes the value it refuses, and that value may be a
// card number (in the token's place), which must not reach a saga's
// state, a dead letter or a log line.
func maskDigits(msg string) string {
	return longDigits.ReplaceAllStringFunc(msg, func(d string) string { return "****" + d[len(d)-4:] })
}

// ValidateValue is Validate for a Go value of an event type.
func ValidateValue(eventType string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return Validate(eventType, data)
}
