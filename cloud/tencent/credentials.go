package tencent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// Environment variables and, in a credentials directory, file names of the
// credentials. They are the same so that one Secret serves as environment
// (envFrom/secretKeyRef) or as a volume.
const (
	EnvSecretID     = "TENCENTCLOUD_SECRET_ID"
	EnvSecretKey    = "TENCENTCLOUD_SECRET_KEY"
	EnvSessionToken = "TENCENTCLOUD_SESSION_TOKEN"
)

// redacted stands for a credential wherever one would be printed.
const redacted = "[REDACTED]"

// credentials are an API key pair and an optional session token. The type
// prints as redacted whatever the verb, and has no exported fields for
// encoders to find: a credential must never reach a log, event or error.
type credentials struct {
	secretID, secretKey, token string
}

func (credentials) String() string     { return "credentials{" + redacted + "}" }
func (c credentials) GoString() string { return c.String() }

// Format keeps every fmt verb, %d and %x included, from printing fields.
func (c credentials) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// MarshalLog is what logr-based loggers print.
func (c credentials) MarshalLog() any { return c.String() }

// sdk returns the SDK's form, for one call.
func (c credentials) sdk() *common.Credential {
	return common.NewTokenCredential(c.secretID, c.secretKey, c.token)
}

// minRedactLength keeps redaction from mangling messages when a test uses a
// one-letter secret; real secrets are 32 characters or more.
const minRedactLength = 6

// redact removes the credentials from a message that might echo them: the
// SDK's errors quote response bodies, which a misbehaving server could fill
// with the request.
func (c credentials) redact(msg string) string {
	for _, s := range []string{c.secretKey, c.token, c.secretID} {
		if len(s) >= minRedactLength {
			msg = strings.ReplaceAll(msg, s, redacted)
		}
	}
	return msg
}

func (c credentials) validate(source string) error {
	var missing []string
	if c.secretID == "" {
		missing = append(missing, "secret ID")
	}
	if c.secretKey == "" {
		missing = append(missing, "secret key")
	}
	if len(missing) > 0 {
		return fmt.Errorf("tencent: %s has no %s", source, strings.Join(missing, " and "))
	}
	return nil
}

// credentialSource hands out the current credentials: fixed ones from the
// environment, or those of a file, read again at most every refresh period
// so that rotated keys are used without a restart.
type credentialSource struct {
	path    string
	refresh time.Duration
	clock   clock.PassiveClock

	mu      sync.Mutex
	current credentials
	checked time.Time
}

func newCredentialSource(path string, refresh time.Duration, clk clock.PassiveClock) (*credentialSource, error) {
	s := &credentialSource{path: path, refresh: refresh, clock: clk}
	if path == "" {
		s.current = credentials{
			secretID:  os.Getenv(EnvSecretID),
			secretKey: os.Getenv(EnvSecretKey),
			token:     os.Getenv(EnvSessionToken),
		}
		if err := s.current.validate("the environment (" + EnvSecretID + ", " + EnvSecretKey + ")"); err != nil {
			return nil, fmt.Errorf("%w; set them or --cloud-credentials-file", err)
		}
		return s, nil
	}
	creds, err := loadCredentialsFile(path)
	if err != nil {
		return nil, err
	}
	s.current, s.checked = creds, clk.Now()
	return s, nil
}

// get returns the credentials to sign the next call with. A file that cannot
// be read or parsed now (e.g. halfway through a rotation) leaves the last
// good credentials in use; the next refresh tries again.
func (s *credentialSource) get(ctx context.Context) credentials {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" || s.clock.Since(s.checked) < s.refresh {
		return s.current
	}
	s.checked = s.clock.Now()
	logger := klog.FromContext(ctx)
	creds, err := loadCredentialsFile(s.path)
	if err != nil {
		logger.Error(err, "Keeping the current CLB API credentials")
		return s.current
	}
	if creds != s.current {
		logger.Info("CLB API credentials changed; using the new ones", "path", s.path)
		s.current = creds
	}
	return s.current
}

// credentialsFile is the JSON form of a credentials file.
type credentialsFile struct {
	SecretID  string `json:"secretId"`
	SecretKey string `json:"secretKey"`
	Token     string `json:"token"`
}

// loadCredentialsFile reads credentials from path, which is either
//
//   - a directory, as a Kubernetes Secret volume gives it, holding the files
//     TENCENTCLOUD_SECRET_ID, TENCENTCLOUD_SECRET_KEY and optionally
//     TENCENTCLOUD_SESSION_TOKEN (surrounding whitespace is ignored); or
//   - a JSON file {"secretId": "...", "secretKey": "...", "token": "..."}
//     with token optional.
//
// Its errors name the path and never the content.
func loadCredentialsFile(path string) (credentials, error) {
	info, err := os.Stat(path)
	if err != nil {
		return credentials{}, fmt.Errorf("tencent: reading credentials: %w", err)
	}
	var creds credentials
	if info.IsDir() {
		creds, err = loadCredentialsDir(path)
	} else {
		creds, err = loadCredentialsJSON(path)
	}
	if err != nil {
		return credentials{}, err
	}
	return creds, creds.validate("credentials " + path)
}

func loadCredentialsDir(dir string) (credentials, error) {
	read := func(name string, optional bool) (string, error) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if optional && errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("tencent: reading credentials: %w", err)
		}
		return strings.TrimSpace(string(data)), nil
	}
	var creds credentials
	var err error
	if creds.secretID, err = read(EnvSecretID, false); err != nil {
		return credentials{}, err
	}
	if creds.secretKey, err = read(EnvSecretKey, false); err != nil {
		return credentials{}, err
	}
	if creds.token, err = read(EnvSessionToken, true); err != nil {
		return credentials{}, err
	}
	return creds, nil
}

func loadCredentialsJSON(path string) (credentials, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return credentials{}, fmt.Errorf("tencent: reading credentials: %w", err)
	}
	var f credentialsFile
	// The decoder's error may quote the content: it is not passed on.
	if json.Unmarshal(data, &f) != nil {
		return credentials{}, fmt.Errorf("tencent: credentials file %s: not a JSON object with secretId, secretKey and optional token", path)
	}
	return credentials{
		secretID:  strings.TrimSpace(f.SecretID),
		secretKey: strings.TrimSpace(f.SecretKey),
		token:     strings.TrimSpace(f.Token),
	}, nil
}
