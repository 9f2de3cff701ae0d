package toc

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

const (
	// maxNameLen is NAME_MAX: the kernel refuses longer path components.
	maxNameLen = 255
	// maxSymlinkTarget is PATH_MAX less the terminating NUL: symlink(2)
	// refuses longer targets.
	maxSymlinkTarget = 4095
)

// checkName refuses a raw entry name (or hard link target) that is empty,
// absolute, contains NUL or a ".." component, or has a component the kernel
// could not look up. "." components and repeated or trailing slashes are
// harmless and cleaned away later.
func checkName(raw string) error {
	if raw == "" {
		return errors.New("empty name")
	}
	if raw[0] == '/' {
		return errors.New("absolute name")
	}
	if strings.IndexByte(raw, 0) >= 0 {
		return errors.New("name contains NUL")
	}
	for rest := raw; rest != ""; {
		comp := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			comp, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if comp == ".." {
			return errors.New(`name has a ".." component`)
		}
		if len(comp) > maxNameLen {
			return fmt.Errorf("name has a component of %d bytes, more than %d", len(comp), maxNameLen)
		}
	}
	return nil
}

// cleanName is the name estargz and the FUSE server use for a raw name that
// passed checkName: relative, without "." components or trailing slashes,
// and "" for the root.
func cleanName(raw string) string {
	c := path.Clean(raw)
	if c == "." {
		return ""
	}
	return c
}

func checkSymlinkTarget(target string) error {
	switch {
	case target == "":
		return errors.New("empty symlink target")
	case len(target) > maxSymlinkTarget:
		return fmt.Errorf("symlink target of %d bytes, more than %d", len(target), maxSymlinkTarget)
	case strings.IndexByte(target, 0) >= 0:
		return errors.New("symlink target contains NUL")
	}
	return nil
}

// checkParents refuses an entry below a name that is not a directory: the
// FUSE server could not place it, and an unpack would have to replace the
// file with a directory or follow a symlink to do so.
func (v *validator) checkParents() error {
	for _, raw := range v.names {
		name := cleanName(raw)
		for i := 0; i < len(name); i++ {
			if name[i] != '/' {
				continue
			}
			if k, ok := v.kinds[name[:i]]; ok && k != kindDir {
				return refuse(ReasonUnsafeName, raw, fmt.Errorf("parent %q is a %s, not a directory", name[:i], k))
			}
		}
	}
	return nil
}

// checkHardlinks resolves every hard link, through chains of hard links, to
// an existing entry that is not a directory. Resolved names are remembered,
// so that a long chain costs linear time, not quadratic.
func (v *validator) checkHardlinks() error {
	resolved := make(map[string]entryKind, len(v.hardlinks))
	// visiting holds the names of the chain being followed: every earlier
	// chain ended up in resolved.
	visiting := make(map[string]bool)
	for _, raw := range v.hardlinks {
		var chain []string
		var target entryKind
		for cur := cleanName(raw); ; {
			if k, ok := resolved[cur]; ok {
				target = k
				break
			}
			k, ok := v.kinds[cur]
			if !ok {
				return refuse(ReasonBadLink, raw, fmt.Errorf("hard link target %q is not in the layer", cur))
			}
			if k != kindHardlink {
				target = k
				break
			}
			if visiting[cur] {
				return refuse(ReasonBadLink, raw, fmt.Errorf("hard link cycle through %q", cur))
			}
			visiting[cur] = true
			chain = append(chain, cur)
			cur = cleanName(v.linkOf[cur]) // checked by entry
		}
		if target == kindDir {
			return refuse(ReasonBadLink, raw, errors.New("hard link to a directory"))
		}
		for _, name := range chain {
			resolved[name] = target
		}
	}
	return nil
}
