package config

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Line is the 1-based line of the document where the key is set, or 0
	// when the problem has no place in a document (Validate on a Config
	// built in code).
	Line int
	// Key is the dotted key, e.g. "workers.mode"; empty for a syntax error
	// that belongs to no key.
	Key string
	// Message says what is wrong and what is allowed.
	Message string
}

// Error reports every problem of a configuration, in document order, one
// per line of its message:
//
//	config.toml:7: workers.mode: "per-node" is not one of "per-image", "shared"
//
// It matches errdefs.ErrInvalidArgument.
type Error struct {
	// File names the document: "config.toml" for Parse, the path for Load,
	// empty for Validate.
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		switch {
		case e.File != "" && p.Line > 0:
			fmt.Fprintf(&b, "%s:%d: ", e.File, p.Line)
		case e.File != "":
			fmt.Fprintf(&b, "%s: ", e.File)
		case p.Line > 0:
			fmt.Fprintf(&b, "line %d: ", p.Line)
		}
		if p.Key != "" {
			b.WriteString(p.Key)
			b.WriteString(": ")
		}
		b.WriteString(p.Message)
	}
	return b.String()
}

// Unwrap classifies every configuration problem as an invalid argument.
func (e *Error) Unwrap() error {
	return errdefs.ErrInvalidArgument
}
