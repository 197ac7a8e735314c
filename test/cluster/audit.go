package cluster

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// AuditLogName is the file, in the log directory, where the API server
// writes the audit events of Options.AuditUsers.
const AuditLogName = "kube-apiserver-audit.log"

// auditPolicy logs, at Metadata level (who, what, the authorizer's decision
// and the response code; no bodies), every request of the given users after
// the API server decided on it, and nothing else.
func auditPolicy(users []string) string {
	quoted := make([]string, len(users))
	for i, u := range users {
		quoted[i] = fmt.Sprintf("%q", u)
	}
	return `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: [` + strings.Join(quoted, ", ") + `]
  - level: None
`
}

// auditFlags writes the policy into the cluster's directory and returns the
// API server's flags for it. The log backend's default mode is blocking: an
// event is in the file before the response is sent, so a reader that comes
// after the requests sees them all.
func (c *Cluster) auditFlags(users []string) ([]string, error) {
	policy := filepath.Join(c.dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy(users)), 0o644); err != nil {
		return nil, err
	}
	c.auditLog = filepath.Join(c.logDir, AuditLogName)
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + c.auditLog,
		"--audit-log-format=json",
		"--audit-log-mode=blocking",
		// No rotation: a reader wants every event of the run in one file.
		"--audit-log-maxsize=0",
	}, nil
}

// AuditLogPath is the API server's audit log (see Options.AuditUsers), or
// "" when auditing is off.
func (c *Cluster) AuditLogPath() string { return c.auditLog }

// AuditEvent is what the tests read of an audit.k8s.io/v1 Event.
type AuditEvent struct {
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	RequestURI string `json:"requestURI"`
	Verb       string `json:"verb"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	UserAgent string `json:"userAgent"`
	// ObjectRef is nil for non-resource requests (/version, discovery).
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		APIGroup    string `json:"apiGroup"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code   int32  `json:"code"`
		Reason string `json:"reason"`
	} `json:"responseStatus"`
	// Annotations hold the authorizer's verdict:
	// authorization.k8s.io/decision ("allow" or "forbid") and
	// authorization.k8s.io/reason (which binding allowed it).
	Annotations map[string]string `json:"annotations"`
}

// Audit annotations set by the API server's authorization filter.
const (
	AuditDecision = "authorization.k8s.io/decision"
	AuditReason   = "authorization.k8s.io/reason"
)

// ReadAuditLog reads the audit events of a JSON-lines audit log.
func ReadAuditLog(path string) ([]AuditEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var events []AuditEvent
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for n := 1; scanner.Scan(); n++ {
		if len(strings.TrimSpace(scanner.Text())) == 0 {
			continue
		}
		var ev AuditEvent
		if err := json.Unmarshal(scanner.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		events = append(events, ev)
	}
	return events, scanner.Err()
}
