package tencent

// The SDK's models are all pointers; these helpers keep the conversions
// readable.

func str(s string) *string { return &s }

// optStr is nil for an empty string, so the field stays out of the request.
func optStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func i64[T ~int | ~int32 | ~int64](n T) *int64 {
	v := int64(n)
	return &v
}

func strs(ss []string) []*string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]*string, len(ss))
	for i := range ss {
		out[i] = &ss[i]
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func derefs(ps []*string) []string {
	var out []string
	for _, p := range ps {
		if p != nil {
			out = append(out, *p)
		}
	}
	return out
}

// single is the one ID of ids, or empty: what the call log names as the
// call's CLB.
func single(ids []string) string {
	if len(ids) == 1 {
		return ids[0]
	}
	return ""
}
