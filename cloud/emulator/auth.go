package emulator

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"clb-direct/cloud"
)

// The one service and version the emulator serves.
const (
	service    = "clb"
	apiVersion = "2018-03-17"
	// tc3Algorithm is the signature method of API 3.0, the SDK's default.
	tc3Algorithm = "TC3-HMAC-SHA256"
	tc3Terminal  = "tc3_request"
	// unsignedPayload in X-TC-Content-SHA256 leaves the body out of the
	// signature (ClientProfile.UnsignedPayload).
	unsignedPayload = "UNSIGNED-PAYLOAD"
)

// Authentication error codes of the real API.
const (
	codeInvalidAuthorization = "AuthFailure.InvalidAuthorization"
	codeSecretIDNotFound     = "AuthFailure.SecretIdNotFound"
	codeSignatureExpire      = "AuthFailure.SignatureExpire"
	codeSignatureFailure     = "AuthFailure.SignatureFailure"
)

// authenticate verifies the TC3-HMAC-SHA256 signature of a request the way
// the API does (and the SDK's common/client.go builds it): the canonical
// request is
//
//	POST\n/\n<query>\n<signed headers as name:value\n>\n<signed names>\n<hex sha256 of the body>
//
// the string to sign is "TC3-HMAC-SHA256\n<timestamp>\n<date>/clb/tc3_request\n<hex sha256 of the
// canonical request>", and the key is derived by HMAC-SHA256 chaining
// "TC3"+SecretKey → date → service → "tc3_request". It returns the caller's
// SecretId. The timestamp is checked first, so that a correctly signed but
// replayed old request reports SignatureExpire.
func (s *Server) authenticate(r *http.Request, body []byte, now time.Time) (string, *cloud.Error) {
	fail := func(code, format string, args ...any) (string, *cloud.Error) {
		return "", cloud.NewError("", code, fmt.Sprintf(format, args...), "")
	}
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return fail(codeInvalidAuthorization, "the Authorization header is missing")
	}
	algorithm, rest, _ := strings.Cut(authz, " ")
	if algorithm != tc3Algorithm {
		return fail(codeInvalidAuthorization, "signature method %q: the emulator verifies %s only", algorithm, tc3Algorithm)
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	credential, signedHeaders, signature := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	scope := strings.Split(credential, "/")
	if len(scope) != 4 || signedHeaders == "" || signature == "" {
		return fail(codeInvalidAuthorization, "the Authorization header must be %s Credential=<SecretId>/<date>/<service>/%s, SignedHeaders=..., Signature=...",
			tc3Algorithm, tc3Terminal)
	}
	secretID, date, scopeService, terminal := scope[0], scope[1], scope[2], scope[3]

	tsHeader := r.Header.Get("X-TC-Timestamp")
	if tsHeader == "" {
		return fail(cloud.CodeMissingParameter, "the X-TC-Timestamp header is missing")
	}
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return fail(cloud.CodeInvalidParameter, "X-TC-Timestamp %q is not a Unix time", tsHeader)
	}
	signedAt := time.Unix(ts, 0)
	if skew := now.Sub(signedAt); skew > s.cfg.MaxClockSkew || -skew > s.cfg.MaxClockSkew {
		return fail(codeSignatureExpire, "the request was signed at %s, more than %s from the server's %s",
			signedAt.UTC().Format(time.RFC3339), s.cfg.MaxClockSkew, now.UTC().Format(time.RFC3339))
	}
	key, ok := s.creds[secretID]
	if !ok {
		return fail(codeSecretIDNotFound, "SecretId %q is not known", secretID)
	}
	switch {
	case scopeService != service:
		return fail(codeSignatureFailure, "the credential scope names service %q; this endpoint is %s", scopeService, service)
	case terminal != tc3Terminal:
		return fail(codeSignatureFailure, "the credential scope must end in %s", tc3Terminal)
	case date != signedAt.UTC().Format(time.DateOnly):
		return fail(codeSignatureFailure, "the credential scope date %s is not the UTC date of X-TC-Timestamp", date)
	}
	names := strings.Split(signedHeaders, ";")
	if !slices.Contains(names, "content-type") || !slices.Contains(names, "host") {
		return fail(codeSignatureFailure, "SignedHeaders %q must include content-type and host", signedHeaders)
	}

	var canonicalHeaders strings.Builder
	for _, name := range names {
		value := r.Header.Get(name)
		if name == "host" {
			value = r.Host
		}
		// The API lower-cases header names and values and trims the values.
		canonicalHeaders.WriteString(strings.ToLower(name) + ":" + strings.ToLower(strings.TrimSpace(value)) + "\n")
	}
	payloadHash := sha256Hex(body)
	if r.Header.Get("X-TC-Content-SHA256") == unsignedPayload {
		payloadHash = sha256Hex([]byte(unsignedPayload))
	}
	canonicalRequest := strings.Join([]string{
		r.Method, "/", r.URL.RawQuery, canonicalHeaders.String(), signedHeaders, payloadHash,
	}, "\n")
	stringToSign := strings.Join([]string{
		tc3Algorithm, tsHeader, date + "/" + scopeService + "/" + tc3Terminal, sha256Hex([]byte(canonicalRequest)),
	}, "\n")
	want := hex.EncodeToString(hmacSHA256(signingKey(key, date, scopeService), stringToSign))
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(signature))) != 1 {
		return fail(codeSignatureFailure, "the signature does not match: check the SecretKey and the signing process")
	}
	return secretID, nil
}

// signingKey derives the TC3 key of a day and a service.
func signingKey(secretKey, date, svc string) []byte {
	k := hmacSHA256([]byte("TC3"+secretKey), date)
	k = hmacSHA256(k, svc)
	return hmacSHA256(k, tc3Terminal)
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// newRequestID returns a random UUID, the shape of a Tencent Cloud
// RequestId.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
