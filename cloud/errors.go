package cloud

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Kind says what the caller should do about a failed call.
type Kind int

const (
	// KindTransient: try again after a backoff (throttling, a task running on
	// the CLB, an internal error, a network failure).
	KindTransient Kind = iota
	// KindNotFound: the CLB or listener is gone; recreate it or forget it.
	KindNotFound
	// KindTerminal: retrying the same request cannot succeed until someone
	// changes something (permissions, parameters); tell the user, retry slowly.
	KindTerminal
	// KindQuota: an account limit is reached; tell the user, retry slowly.
	KindQuota
)

func (k Kind) String() string {
	switch k {
	case KindTransient:
		return "Transient"
	case KindNotFound:
		return "NotFound"
	case KindTerminal:
		return "Terminal"
	case KindQuota:
		return "Quota"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error codes of the CLB API that the controller and the fake use.
const (
	CodeRequestLimitExceeded = "RequestLimitExceeded"
	CodeResourceInOperating  = "FailedOperation.ResourceInOperating"
	CodeInternalError        = "InternalError"
	CodeLBNotFound           = "InvalidParameter.LBIdNotFound"
	CodeListenerNotFound     = "InvalidParameter.ListenerIdNotFound"
	CodeResourceNotFound     = "ResourceNotFound"
	CodePortCheckFailed      = "InvalidParameter.PortCheckFailed"
	CodeLimitExceeded        = "LimitExceeded"
	CodeInvalidParameter     = "InvalidParameter"
	CodeInvalidParameterVal  = "InvalidParameterValue"
	CodeMissingParameter     = "MissingParameter"
	CodeUnknownParameter     = "UnknownParameter"
	CodeUnauthorized         = "UnauthorizedOperation"
	CodeAuthFailure          = "AuthFailure"
	CodeFailedOperation      = "FailedOperation"
)

// Error is a failed CLB API call.
type Error struct {
	Action    string
	Code      string
	Message   string
	RequestID string
	Kind      Kind
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s: %s", e.Action, e.Code, e.Message)
	if e.RequestID != "" {
		s += " (RequestId " + e.RequestID + ")"
	}
	return s
}

// NewError builds an *Error whose Kind follows from the code.
func NewError(action, code, message, requestID string) *Error {
	return &Error{Action: action, Code: code, Message: message, RequestID: requestID, Kind: KindOfCode(code)}
}

// KindOfCode classifies a CLB API error code. Codes we do not know are
// transient: a retry with backoff is the safe default for the unknown.
func KindOfCode(code string) Kind {
	switch {
	case code == CodeLBNotFound, code == CodeListenerNotFound,
		code == CodeResourceNotFound, strings.HasPrefix(code, CodeResourceNotFound+"."):
		return KindNotFound
	case code == CodeLimitExceeded, strings.HasPrefix(code, CodeLimitExceeded+"."):
		return KindQuota
	case code == CodePortCheckFailed,
		code == CodeUnauthorized, strings.HasPrefix(code, CodeUnauthorized+"."),
		code == CodeAuthFailure, strings.HasPrefix(code, CodeAuthFailure+"."),
		code == CodeInvalidParameterVal, strings.HasPrefix(code, CodeInvalidParameterVal+"."),
		code == CodeInvalidParameter, code == CodeMissingParameter,
		// Configuration errors: a wrong --region or endpoint.
		code == "InvalidAction", code == "UnsupportedRegion", code == "NoSuchVersion",
		code == CodeUnknownParameter, code == "UnsupportedProtocol":
		return KindTerminal
	}
	return KindTransient
}

// KindOf classifies any error: an *Error (possibly wrapped) by its code,
// anything else (network failures, timeouts) as transient.
func KindOf(err error) Kind {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Kind
	}
	return KindTransient
}

// IsNotFound reports whether err says the CLB or listener does not exist.
func IsNotFound(err error) bool { return err != nil && KindOf(err) == KindNotFound }

// HasCode reports whether err is an *Error with exactly that code.
func HasCode(err error, code string) bool {
	var ce *Error
	return errors.As(err, &ce) && ce.Code == code
}

// PartialFailure is a batch call that succeeded for some listeners and failed
// for the listeners it names; only their backends need another try.
type PartialFailure struct {
	Action            string
	FailedListenerIDs []string
}

func (p *PartialFailure) Error() string {
	return fmt.Sprintf("%s failed for listeners %s", p.Action, strings.Join(p.FailedListenerIDs, ","))
}

// Failed reports whether the call failed for the listener.
func (p *PartialFailure) Failed(listenerID string) bool {
	return slices.Contains(p.FailedListenerIDs, listenerID)
}
