package toc

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
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
	for comp := range strings.SplitSeq(raw, "/") {
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

// sortNames sorts the positions of names by name, then by position.
func (v *validator) sortNames() {
	v.sorted = make([]int32, len(v.names))
	for i := range v.sorted {
		v.sorted[i] = int32(i)
	}
	slices.SortFunc(v.sorted, func(a, b int32) int {
		return cmp.Or(strings.Compare(v.names[a], v.names[b]), cmp.Compare(a, b))
	})
}

// checkDuplicates refuses a name that more than one entry has, reporting
// the first entry in TOC order that repeats an earlier one's name.
func (v *validator) checkDuplicates() error {
	v.sortNames()
	// sorted is by name, then in TOC order: an entry with the name of the
	// one before it repeats an earlier entry's name, and the first such
	// entry of all is the one to report.
	const none = math.MaxInt32
	first := int32(none)
	for k := 1; k < len(v.sorted); k++ {
		if prev, cur := v.sorted[k-1], v.sorted[k]; v.names[prev] == v.names[cur] {
			first = min(first, cur)
		}
	}
	if first == none {
		return nil
	}
	return refuse(ReasonDuplicateName, v.rawName(first), fmt.Errorf("%q is named by more than one entry", v.names[first]))
}

// lookup returns the type of the entry named name (cleaned), once names
// are sorted and unique.
func (v *validator) lookup(name string) (entryKind, bool) {
	k, found := slices.BinarySearchFunc(v.sorted, name, func(pos int32, name string) int {
		return strings.Compare(v.names[pos], name)
	})
	if !found {
		return 0, false
	}
	return v.kinds[v.sorted[k]], true
}

// hasDescendant reports whether any name is below name: in name order,
// the names starting with name+"/" follow each other.
func (v *validator) hasDescendant(name string) bool {
	k, _ := slices.BinarySearchFunc(v.sorted, name, func(pos int32, name string) int {
		return compareWithSlash(v.names[pos], name)
	})
	if k == len(v.sorted) {
		return false
	}
	s := v.names[v.sorted[k]]
	return len(s) > len(name) && s[len(name)] == '/' && s[:len(name)] == name
}

// compareWithSlash compares s with name+"/" without building the latter.
func compareWithSlash(s, name string) int {
	if len(s) <= len(name) {
		if c := strings.Compare(s, name[:len(s)]); c != 0 {
			return c
		}
		return -1 // s is a prefix of name+"/", shorter
	}
	if c := strings.Compare(s[:len(name)], name); c != 0 {
		return c
	}
	return cmp.Compare(s[len(name)], '/')
}

// checkParents refuses an entry below a name that is not a directory: the
// FUSE server could not place it, and an unpack would have to replace the
// file with a directory or follow a symlink to do so. The first such entry
// in TOC order is reported, with its topmost parent that is not a
// directory.
func (v *validator) checkParents() error {
	found := false
	for pos, k := range v.kinds {
		if k != kindDir && v.hasDescendant(v.names[pos]) {
			found = true
			break
		}
	}
	if !found {
		return nil
	}
	for pos, name := range v.names {
		for i := 0; i < len(name); i++ {
			if name[i] != '/' {
				continue
			}
			if k, ok := v.lookup(name[:i]); ok && k != kindDir {
				return refuse(ReasonUnsafeName, v.rawName(int32(pos)), fmt.Errorf("parent %q is a %s, not a directory", name[:i], k))
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
	for _, pos := range v.hardlinks {
		raw := v.rawName(pos)
		var chain []string
		var target entryKind
		for cur := v.names[pos]; ; {
			if k, ok := resolved[cur]; ok {
				target = k
				break
			}
			k, ok := v.lookup(cur)
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
