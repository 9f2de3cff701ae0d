package lazyfs

import (
	"path"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// Names with a meaning for overlay and eStargz layers.
const (
	// whiteoutPrefix marks a deleted lower file: ".wh.<name>" hides <name>.
	whiteoutPrefix = ".wh."
	// whiteoutMetaPrefix marks aufs bookkeeping (".wh..wh.plnk" and the
	// like), which no runtime exposes.
	whiteoutMetaPrefix = whiteoutPrefix + whiteoutPrefix
	// opaqueMarker makes its directory opaque: lower layers' contents of
	// that directory are hidden.
	opaqueMarker = whiteoutMetaPrefix + ".opq"
	// opaqueXattr is what overlayfs asks a lower directory to learn that
	// it is opaque, and opaqueValue the answer that means "yes".
	opaqueXattr = "trusted.overlay.opaque"
	opaqueValue = "y"
	// trustedPrefix xattrs are overlayfs' own metadata: one stored in a
	// layer could forge whiteouts or redirects, so none is passed through.
	trustedPrefix = "trusted."
)

// cleanPath returns the slash-separated path of a raw TOC name relative to
// the root ("" for the root), as path.Clean would give it. A name that is
// already clean, apart from leading "./" or "/" and trailing slashes (as tar
// writes directories), is returned as a substring of name without
// allocating.
func cleanPath(name string) string {
	s := name
	for strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") {
		s = strings.TrimPrefix(strings.TrimPrefix(s, "./"), "/")
	}
	s = strings.TrimRight(s, "/")
	if isClean(s) {
		return s
	}
	c := path.Clean("/" + name)
	return c[1:]
}

// isClean reports whether s, with no leading or trailing slash, has no
// empty, "." or ".." component.
func isClean(s string) bool {
	if s == "" {
		return true
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '/' {
			continue
		}
		switch s[start:i] {
		case "", ".", "..":
			return false
		}
		start = i + 1
	}
	return true
}

// splitPath splits a clean path into its parent directory and base name.
func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/') // -1 without one: "" and p
	return p[:max(i, 0)], p[i+1:]
}

// joinPath joins a clean directory path and a base name.
func joinPath(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}

// hiddenAtRoot reports whether a root-level name is eStargz bookkeeping,
// which an ordinary unpack of the original image would not contain.
func hiddenAtRoot(base string) bool {
	switch base {
	case estargz.PrefetchLandmark, estargz.NoPrefetchLandmark, estargz.TOCTarName:
		return true
	}
	return false
}

// hasMetaComponent reports whether any component of the clean path p is
// aufs bookkeeping: everything below such a directory is hidden with it.
func hasMetaComponent(p string) bool {
	return strings.HasPrefix(p, whiteoutMetaPrefix) || strings.Contains(p, "/"+whiteoutMetaPrefix)
}
