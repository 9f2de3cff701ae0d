package daemonapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errhttp"
)

// ErrorInfo is how an error crosses either wire: Code names the errdefs
// class (see the Code* constants) and Message is the server's error text.
type ErrorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Codes of ErrorInfo, one per errdefs class (and the two context errors).
const (
	CodeUnknown            = "unknown"
	CodeInvalidArgument    = "invalid_argument"
	CodeNotFound           = "not_found"
	CodeAlreadyExists      = "already_exists"
	CodePermissionDenied   = "permission_denied"
	CodeResourceExhausted  = "resource_exhausted"
	CodeFailedPrecondition = "failed_precondition"
	CodeConflict           = "conflict"
	CodeNotModified        = "not_modified"
	CodeAborted            = "aborted"
	CodeOutOfRange         = "out_of_range"
	CodeNotImplemented     = "not_implemented"
	CodeInternal           = "internal"
	CodeUnavailable        = "unavailable"
	CodeDataLoss           = "data_loss"
	CodeUnauthenticated    = "unauthenticated"
	CodeCanceled           = "canceled"
	CodeDeadlineExceeded   = "deadline_exceeded"
)

// errorClasses maps each code to the sentinel errors.Is matches on the
// client side.
var errorClasses = map[string]error{
	CodeUnknown:            errdefs.ErrUnknown,
	CodeInvalidArgument:    errdefs.ErrInvalidArgument,
	CodeNotFound:           errdefs.ErrNotFound,
	CodeAlreadyExists:      errdefs.ErrAlreadyExists,
	CodePermissionDenied:   errdefs.ErrPermissionDenied,
	CodeResourceExhausted:  errdefs.ErrResourceExhausted,
	CodeFailedPrecondition: errdefs.ErrFailedPrecondition,
	CodeConflict:           errdefs.ErrConflict,
	CodeNotModified:        errdefs.ErrNotModified,
	CodeAborted:            errdefs.ErrAborted,
	CodeOutOfRange:         errdefs.ErrOutOfRange,
	CodeNotImplemented:     errdefs.ErrNotImplemented,
	CodeInternal:           errdefs.ErrInternal,
	CodeUnavailable:        errdefs.ErrUnavailable,
	CodeDataLoss:           errdefs.ErrDataLoss,
	CodeUnauthenticated:    errdefs.ErrUnauthenticated,
	CodeCanceled:           context.Canceled,
	CodeDeadlineExceeded:   context.DeadlineExceeded,
}

// errorCode names the errdefs class of err. errdefs.Resolve picks the
// outermost class in the chain, so a not-found cause that the server wrapped
// as an invalid argument travels as invalid_argument.
func errorCode(err error) string {
	class := errdefs.Resolve(err)
	for code, sentinel := range errorClasses {
		if class == sentinel {
			return code
		}
	}
	return CodeUnknown
}

// newErrorInfo describes err for the wire.
func newErrorInfo(err error) ErrorInfo {
	return ErrorInfo{Code: errorCode(err), Message: err.Error()}
}

// httpStatus is the status an error is answered with: errhttp's choice for
// the class errorCode names, so that status and code never disagree (errhttp
// alone tests classes in its own order, not the chain's).
func httpStatus(err error) int {
	return errhttp.ToHTTP(errdefs.Resolve(err))
}

// Err turns the wire form back into an error of the same errdefs class
// whose text is the server's message. An unknown or missing code falls back
// to the class of the HTTP status (0 when there is none, as on the control
// socket, gives errdefs.ErrUnknown).
func (e ErrorInfo) Err(status int) error {
	class, ok := errorClasses[e.Code]
	if !ok {
		class = errdefs.ErrUnknown
		if status != 0 {
			class = errhttp.ToNative(status)
		}
	}
	msg := e.Message
	if msg == "" {
		if status != 0 {
			msg = http.StatusText(status)
		}
		if msg == "" {
			return class
		}
	}
	if c, ok := class.(interface{ WithMessage(string) error }); ok {
		return c.WithMessage(msg)
	}
	if msg == class.Error() {
		return class
	}
	return fmt.Errorf("%s: %w", msg, class)
}
