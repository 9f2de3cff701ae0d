package toc

import (
	"errors"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// Reasons a layer is refused for lazy loading. They are short and stable so
// that they can label metrics.
const (
	ReasonTOCDigestMismatch = "toc_digest_mismatch"
	ReasonTOCTooLarge       = "toc_too_large"
	ReasonTooManyEntries    = "too_many_entries"
	ReasonUnsafeName        = "unsafe_name"
	ReasonDuplicateName     = "duplicate_name"
	ReasonBadOffset         = "bad_offset"
	ReasonBadSize           = "bad_size"
	ReasonUnverifiable      = "unverifiable"
	ReasonBadLink           = "bad_link"
	ReasonUnsupportedFormat = "unsupported_format"
	ReasonMalformed         = "malformed"
)

// RefusedError is returned when a layer must not be loaded lazily. It
// matches errdefs.ErrInvalidArgument with errors.Is: the layer itself is at
// fault, and the caller falls back to an ordinary unpack.
type RefusedError struct {
	// Layer is the blob digest of the refused layer; Fetch, Get and Validate
	// set it.
	Layer digest.Digest
	// Reason is one of the Reason* constants.
	Reason string
	// Entry is the raw name of the offending TOC entry ("#<index>" for an
	// entry without a name); empty when the TOC as a whole is refused.
	Entry string
	// Err says what is wrong.
	Err error
}

// Error names the layer, the reason and the offending entry. Entry names are
// quoted: they come from the layer and may contain anything.
func (e *RefusedError) Error() string {
	var b strings.Builder
	b.WriteString("layer ")
	if e.Layer == "" {
		b.WriteString("(unknown)")
	} else {
		b.WriteString(e.Layer.String())
	}
	b.WriteString(" refused for lazy loading (")
	b.WriteString(e.Reason)
	b.WriteString(")")
	if e.Entry != "" {
		b.WriteString(": entry ")
		b.WriteString(strconv.Quote(e.Entry))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap exposes both the cause and the errdefs class.
func (e *RefusedError) Unwrap() []error {
	if e.Err == nil {
		return []error{errdefs.ErrInvalidArgument}
	}
	return []error{e.Err, errdefs.ErrInvalidArgument}
}

func refuse(reason, entry string, err error) *RefusedError {
	return &RefusedError{Reason: reason, Entry: entry, Err: err}
}

// withLayer names the layer in a RefusedError that does not name one yet;
// other errors pass through untouched.
func withLayer(err error, layer digest.Digest) error {
	var re *RefusedError
	if errors.As(err, &re) && re.Layer == "" {
		re.Layer = layer
	}
	return err
}
