package remote

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errhttp"
)

// classifyStatus returns the errdefs class of an HTTP status a registry
// answered with. Statuses that may go away on their own (timeouts, rate
// limits, 5xx) are ErrUnavailable so that callers know a later retry may
// succeed; errhttp's mapping covers the rest.
func classifyStatus(code int) error {
	switch {
	case code == http.StatusNotFound:
		return errdefs.ErrNotFound
	case code == http.StatusUnauthorized:
		return errdefs.ErrUnauthenticated
	case code == http.StatusForbidden:
		return errdefs.ErrPermissionDenied
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return errdefs.ErrUnavailable
	default:
		return errhttp.ToNative(code)
	}
}

// classifyTransportError marks a failed round trip (refused, reset, timed
// out, TLS) as ErrUnavailable, keeping the cause for errors.Is.
func classifyTransportError(err error) error {
	return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
}

// classifyAuthError classes a failure of the authorizer: a token server's
// status keeps its meaning, an unreachable token server is unavailable,
// anything else (bad challenge, missing credentials) is unauthenticated.
func classifyAuthError(err error) error {
	var st remoteerrors.ErrUnexpectedStatus
	switch {
	case errors.As(err, &st):
		return fmt.Errorf("token server: %w: %w", err, classifyStatus(st.StatusCode))
	case isTransportError(err):
		return classifyTransportError(err)
	default:
		return fmt.Errorf("%w: %w", err, errdefs.ErrUnauthenticated)
	}
}

// isTransportError reports whether err comes from a round trip that got no
// HTTP answer at all.
func isTransportError(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue)
}

// authError marks a failure of authorization (as opposed to one of the
// blob request itself) for the failure metrics.
type authError struct{ err error }

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }
