package daemonapi

import (
	"fmt"
	"path"
	"strings"
	"unicode"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// MaxMountIDLength bounds a mount id. A sha256 chain id with its algorithm
// prefix (71 bytes) fits with room to spare.
const MaxMountIDLength = 128

// ValidateMountID checks that id can name a mount on both wires: 1 to
// MaxMountIDLength bytes of [A-Za-z0-9._:-], starting with a letter or a
// digit. The restriction keeps ids safe as a URL path segment, a log field
// and a file name.
func ValidateMountID(id string) error {
	if id == "" {
		return fmt.Errorf("mount id is empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(id) > MaxMountIDLength {
		return fmt.Errorf("mount id is %d bytes long, more than %d: %w", len(id), MaxMountIDLength, errdefs.ErrInvalidArgument)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || i > 0 && (c == '.' || c == '_' || c == ':' || c == '-') {
			continue
		}
		return fmt.Errorf("mount id %q: byte %d (%q) is not allowed: %w", id, i, c, errdefs.ErrInvalidArgument)
	}
	return nil
}

// maxRefLength and maxPathLength bound the free-form request fields.
const (
	maxRefLength  = 1024
	maxPathLength = 4096
)

// validate checks every field of a load request; messages name the JSON
// field.
func (r LoadLayerRequest) validate() error {
	if err := ValidateMountID(r.MountID); err != nil {
		return fmt.Errorf("mount_id: %w", err)
	}
	if err := validateText("image_ref", r.ImageRef, maxRefLength); err != nil {
		return err
	}
	if strings.ContainsFunc(r.ImageRef, unicode.IsSpace) {
		return fmt.Errorf("image_ref %q contains a space: %w", r.ImageRef, errdefs.ErrInvalidArgument)
	}
	for _, f := range []struct{ name, value string }{
		{"layer_digest", r.LayerDigest},
		{"toc_digest", r.TOCDigest},
	} {
		if f.value == "" {
			return fmt.Errorf("%s is missing: %w", f.name, errdefs.ErrInvalidArgument)
		}
		if _, err := digest.Parse(f.value); err != nil {
			return fmt.Errorf("%s %q: %w: %w", f.name, f.value, errdefs.ErrInvalidArgument, err)
		}
	}
	if err := validateText("mountpoint", r.Mountpoint, maxPathLength); err != nil {
		return err
	}
	if !path.IsAbs(r.Mountpoint) || path.Clean(r.Mountpoint) != r.Mountpoint {
		return fmt.Errorf("mountpoint %q is not an absolute clean path: %w", r.Mountpoint, errdefs.ErrInvalidArgument)
	}
	if len(r.NextLayers) > MaxNextLayers {
		return fmt.Errorf("next_layers lists %d layers, more than %d: %w", len(r.NextLayers), MaxNextLayers, errdefs.ErrInvalidArgument)
	}
	for _, d := range r.NextLayers {
		if _, err := digest.Parse(d); err != nil {
			return fmt.Errorf("next_layers: %q: %w: %w", d, errdefs.ErrInvalidArgument, err)
		}
	}
	return nil
}

// validateText checks a required field for presence, length and control
// characters (which have no business in a reference or a path, and would
// garble logs).
func validateText(name, value string, limit int) error {
	if value == "" {
		return fmt.Errorf("%s is missing: %w", name, errdefs.ErrInvalidArgument)
	}
	if len(value) > limit {
		return fmt.Errorf("%s is %d bytes long, more than %d: %w", name, len(value), limit, errdefs.ErrInvalidArgument)
	}
	for _, c := range value {
		if unicode.IsControl(c) {
			return fmt.Errorf("%s %q contains a control character: %w", name, value, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
