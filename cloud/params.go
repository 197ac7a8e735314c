package cloud

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// DecodeParameters decodes the parameters of a request to action, a JSON
// object as a map, into the struct into points to, whose JSON field names
// are the parameter names (an SDK request, or a model of one). It refuses
// what the API refuses before doing anything, with a KindTerminal *Error:
// a top-level name the struct does not have, compared exactly as the API
// does where encoding/json would match any case, or an unknown field
// inside a parameter (UnknownParameter); a value of the wrong type
// (InvalidParameter). Both implementations decode ExtensiveParameters with
// it, so that they refuse the same maps with the same errors.
func DecodeParameters(action string, params map[string]any, into any) error {
	fail := func(code, format string, args ...any) error {
		return NewError(action, code, fmt.Sprintf(format, args...), "")
	}
	known := JSONFieldNames(reflect.TypeOf(into).Elem())
	var unknown []string
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return fail(CodeUnknownParameter, "no such parameter: %s", strings.Join(unknown, ", "))
	}
	data, err := json.Marshal(params)
	if err != nil {
		return fail(CodeInvalidParameter, "the parameters are not JSON: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(into)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr):
		return fail(CodeInvalidParameter, "parameter %s must be of type %s, not %s", typeErr.Field, typeErr.Type, typeErr.Value)
	}
	// encoding/json has no error type for an unknown field; its message
	// names the field.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fail(CodeUnknownParameter, "no such field inside a parameter: %s", name)
	}
	return fail(CodeInvalidParameter, "decoding the parameters: %v", err)
}

// JSONFieldNames returns the JSON names of a struct's own exported fields:
// the parameter names an SDK request type accepts.
func JSONFieldNames(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out[name] = true
	}
	return out
}
