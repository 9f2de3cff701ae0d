package mgmtapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errhttp"
	"github.com/containerd/log"
)

// ErrorInfo is an error on the wire: Code names its errdefs class and
// Message is the server's text.
type ErrorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classes pairs each code with the sentinel errors.Is matches on the
// client; HTTP statuses alone cannot tell some classes apart (409 is both
// already_exists and conflict).
var classes = []struct {
	code  string
	class error
}{
	{"invalid_argument", errdefs.ErrInvalidArgument},
	{"not_found", errdefs.ErrNotFound},
	{"already_exists", errdefs.ErrAlreadyExists},
	{"permission_denied", errdefs.ErrPermissionDenied},
	{"resource_exhausted", errdefs.ErrResourceExhausted},
	{"failed_precondition", errdefs.ErrFailedPrecondition},
	{"conflict", errdefs.ErrConflict},
	{"not_modified", errdefs.ErrNotModified},
	{"aborted", errdefs.ErrAborted},
	{"out_of_range", errdefs.ErrOutOfRange},
	{"not_implemented", errdefs.ErrNotImplemented},
	{"internal", errdefs.ErrInternal},
	{"unavailable", errdefs.ErrUnavailable},
	{"data_loss", errdefs.ErrDataLoss},
	{"unauthenticated", errdefs.ErrUnauthenticated},
	{"canceled", context.Canceled},
	{"deadline_exceeded", context.DeadlineExceeded},
	{"unknown", errdefs.ErrUnknown},
}

// newErrorInfo describes err for the wire. errdefs.Resolve picks the
// outermost class in the chain, as callers' errors.Is would see it first.
func newErrorInfo(err error) ErrorInfo {
	class := errdefs.Resolve(err)
	for _, c := range classes {
		if c.class == class {
			return ErrorInfo{Code: c.code, Message: err.Error()}
		}
	}
	return ErrorInfo{Code: "unknown", Message: err.Error()}
}

// Err turns the wire form back into an error of its class with the
// server's message. An unknown code falls back to the class of the status.
func (e ErrorInfo) Err(status int) error {
	class := errhttp.ToNative(status)
	for _, c := range classes {
		if c.code == e.Code {
			class = c.class
		}
	}
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	if msg == "" || msg == class.Error() {
		return class
	}
	return fmt.Errorf("%s: %w", msg, class)
}

// writeError answers err as JSON ErrorInfo with the status of its class.
func writeError(ctx context.Context, w http.ResponseWriter, err error) {
	status := errhttp.ToHTTP(errdefs.Resolve(err))
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// errhttp knows no context errors; the client hung up or the
		// server is stopping.
		status = http.StatusServiceUnavailable
	}
	if status >= 500 {
		log.G(ctx).WithError(err).Warn("management api request failed")
	}
	writeJSON(ctx, w, status, newErrorInfo(err))
}

// writeJSON answers v with status.
func writeJSON(ctx context.Context, w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.G(ctx).WithError(err).Debug("failed to write a management api answer")
	}
}
