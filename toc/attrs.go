package toc

import (
	// Register the hashes that go-digest can verify.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
	"math"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
)

const (
	// maxMode is the largest mode a tar header's 7 octal digits hold.
	maxMode = 0o7777777
	// maxID excludes (uid_t)-1, which chown(2) reads as "unchanged".
	maxID = math.MaxUint32 - 1
	// Linux device numbers: 12-bit major, 20-bit minor.
	maxDevMajor = 1<<12 - 1
	maxDevMinor = 1<<20 - 1
	// XATTR_NAME_MAX, XATTR_SIZE_MAX, and the listxattr(2) buffer limit.
	maxXattrName  = 255
	maxXattrValue = 64 << 10
	maxXattrList  = 64 << 10
)

// checkAttrs refuses metadata the kernel could not carry.
func checkAttrs(e *estargz.TOCEntry) error {
	if e.Mode < 0 || e.Mode > maxMode {
		return fmt.Errorf("mode %o out of range", e.Mode)
	}
	if e.UID < 0 || e.UID > maxID || e.GID < 0 || e.GID > maxID {
		return fmt.Errorf("uid %d or gid %d out of range", e.UID, e.GID)
	}
	list := 0
	for name, value := range e.Xattrs {
		if name == "" || len(name) > maxXattrName || strings.IndexByte(name, 0) >= 0 {
			return fmt.Errorf("invalid xattr name %q", name)
		}
		if len(value) > maxXattrValue {
			return fmt.Errorf("xattr %q has a value of %d bytes, more than %d", name, len(value), maxXattrValue)
		}
		list += len(name) + 1
	}
	if list > maxXattrList {
		return fmt.Errorf("xattr names take %d bytes, more than %d", list, maxXattrList)
	}
	return nil
}

func checkDevice(e *estargz.TOCEntry) error {
	if e.DevMajor < 0 || e.DevMajor > maxDevMajor || e.DevMinor < 0 || e.DevMinor > maxDevMinor {
		return fmt.Errorf("device %d:%d out of range", e.DevMajor, e.DevMinor)
	}
	return nil
}

// checkDigest refuses a digest that cannot verify anything: malformed, or
// of an algorithm this build cannot compute. It checks what
// digest.Digest.Validate checks without its regular expression, which
// dominated the validation of large TOCs.
func checkDigest(s string) error {
	algo, encoded, ok := strings.Cut(s, ":")
	if !ok || !digest.Algorithm(algo).Available() {
		return fmt.Errorf("digest %q: %w", s, digest.ErrDigestUnsupported)
	}
	if len(encoded) != digest.Algorithm(algo).Size()*2 || !isLowerHex(encoded) {
		return fmt.Errorf("digest %q: %w", s, digest.ErrDigestInvalidFormat)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
