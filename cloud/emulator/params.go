package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

// action serves one API action: it checks the request's parameters against
// the SDK's request type, decodes them into it and runs the handler.
type action struct {
	// known are the parameters of the SDK's request type; supported those
	// the emulator implements; ignored those it accepts and ignores
	// because they change nothing it models (a VpcId, a zone).
	known, supported, ignored map[string]bool
	serve                     func(ctx context.Context, s *Server, c *fake.Cloud, body []byte) (resp any, requestID string, err error)
}

// handlerFunc is an action's logic over the SDK's own request and response
// types, so that the JSON on the wire has exactly the SDK's shapes. It
// returns the response and, for a write, its task's ID, which is the
// RequestId (empty: a fresh one).
type handlerFunc[Req, Resp any] func(ctx context.Context, s *Server, c *fake.Cloud, req *Req) (*Resp, string, error)

// newAction builds an action from the SDK's request constructor (e.g.
// clb.NewDescribeTargetsRequest) and a handler.
func newAction[Req, Resp any](newReq func() *Req, fn handlerFunc[Req, Resp], supported, ignored []string) *action {
	a := &action{known: cloud.JSONFieldNames(reflect.TypeFor[Req]()), supported: set(supported), ignored: set(ignored)}
	for name := range a.supported {
		if !a.known[name] {
			panic(fmt.Sprintf("emulator: %T has no parameter %s", *new(Req), name))
		}
	}
	a.serve = func(ctx context.Context, s *Server, c *fake.Cloud, body []byte) (any, string, error) {
		req := newReq()
		if err := a.decode(body, req); err != nil {
			return nil, "", err
		}
		resp, id, err := fn(ctx, s, c, req)
		if err != nil {
			return nil, "", err
		}
		return resp, id, nil
	}
	return a
}

// decode checks the top-level parameters by name (exactly, as the API
// does, where encoding/json would match any case) and decodes the body
// into req, refusing unknown nested fields too.
func (a *action) decode(body []byte, req any) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return apiErr(cloud.CodeInvalidParameter, "the body is not a JSON object: %v", err)
	}
	for name := range top {
		switch {
		case !a.known[name]:
			return apiErr(cloud.CodeUnknownParameter, "the parameter `%s` is not recognized", name)
		case !a.supported[name] && !a.ignored[name]:
			return apiErr(cloud.CodeInvalidParameter, "the emulator does not implement the parameter `%s`", name)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return apiErr(cloud.CodeInvalidParameter, "the parameter `%s` must be of type %s, not %s", typeErr.Field, typeErr.Type, typeErr.Value)
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return apiErr(cloud.CodeUnknownParameter, "the parameter %s is not recognized", name)
		}
		return apiErr(cloud.CodeInvalidParameter, "the body is not valid JSON: %v", err)
	}
	return nil
}

func set(names []string) map[string]bool {
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out
}

// withBody allocates the SDK response's Response struct, which the SDK
// declares as an anonymous struct pointer, so that handlers can fill it.
func withBody[R any](resp *R) *R {
	f := reflect.ValueOf(resp).Elem().FieldByName("Response")
	f.Set(reflect.New(f.Type().Elem()))
	return resp
}

// setRequestID sets Response.RequestId of an SDK response.
func setRequestID(resp any, id string) {
	v := reflect.ValueOf(resp).Elem().FieldByName("Response")
	if v.IsNil() {
		v.Set(reflect.New(v.Type().Elem()))
	}
	v.Elem().FieldByName("RequestId").Set(reflect.ValueOf(&id))
}

// apiErr is an error of the call being served, mapped to the envelope as
// is.
func apiErr(code, format string, args ...any) *cloud.Error {
	return cloud.NewError("", code, fmt.Sprintf(format, args...), "")
}

func missing(name string) *cloud.Error {
	return apiErr(cloud.CodeMissingParameter, "the parameter `%s` is missing", name)
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// strs turns the SDK's []*string into []string, skipping nils.
func strs(in []*string) []string {
	var out []string
	for _, s := range in {
		if s != nil {
			out = append(out, *s)
		}
	}
	return out
}

func strPtrs(in []string) []*string {
	out := make([]*string, len(in))
	for i := range in {
		out[i] = &in[i]
	}
	return out
}

// required returns the value of a required string parameter.
func required(p *string, name string) (string, error) {
	if p == nil || *p == "" {
		return "", missing(name)
	}
	return *p, nil
}
