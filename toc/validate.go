package toc

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// tocVersion is the only TOC version eStargz and stargz have written.
const tocVersion = 1

// Validate refuses a layer whose TOC a lazy mount could not serve safely,
// with a *RefusedError naming the first offending entry. Names are checked
// raw, as the layer wrote them, before any cleaning. Entry types, sizes,
// offsets, digests, links and the shape of the tree are all checked, so
// that the FUSE server may trust the TOC afterwards.
//
// Validate does not modify l.
func Validate(l *Layer, lim Limits) error {
	if err := lim.check(); err != nil {
		return err
	}
	if l == nil {
		return refuse(ReasonMalformed, "", errors.New("no layer"))
	}
	return withLayer(validateLayer(l, lim), l.BlobDigest)
}

func validateLayer(l *Layer, lim Limits) error {
	switch {
	case l.TOC == nil:
		return refuse(ReasonMalformed, "", errors.New("no table of contents"))
	case l.BlobSize <= 0:
		return refuse(ReasonBadSize, "", fmt.Errorf("blob size %d is not positive", l.BlobSize))
	case l.TOCOffset < 0 || l.TOCOffset >= l.BlobSize:
		return refuse(ReasonBadOffset, "", fmt.Errorf("TOC offset %d is outside the %d-byte blob", l.TOCOffset, l.BlobSize))
	case l.TOC.Version != tocVersion:
		return refuse(ReasonUnsupportedFormat, "", fmt.Errorf("TOC version %d is not %d", l.TOC.Version, tocVersion))
	case len(l.TOC.Entries) > lim.MaxEntries:
		return refuse(ReasonTooManyEntries, "", fmt.Errorf("TOC has %d entries, limit is %d", len(l.TOC.Entries), lim.MaxEntries))
	}
	n := len(l.TOC.Entries)
	v := &validator{
		tocOffset: l.TOCOffset,
		byName:    make(map[string]*estargz.TOCEntry, n),
		names:     make([]namedEntry, 0, n),
		groups:    make([]streamGroup, 0, n),
	}
	for i, e := range l.TOC.Entries {
		if err := v.entry(i, e); err != nil {
			return err
		}
	}
	if err := v.endFile(); err != nil {
		return err
	}
	if err := v.checkSpans(); err != nil {
		return err
	}
	if err := v.checkParents(); err != nil {
		return err
	}
	return v.checkHardlinks()
}

// validator carries what the checks of one TOC need across entries.
type validator struct {
	tocOffset int64
	// byName holds every non-chunk entry by its cleaned name ("" is the root).
	byName map[string]*estargz.TOCEntry
	// names lists the cleaned names in TOC order, so that errors are
	// reported for the first offending entry, not a random one.
	names     []namedEntry
	hardlinks []namedEntry
	// file is the regular file whose chunks are being read, if inFile.
	file   fileState
	inFile bool
	// groups are the compressed streams holding data, in blob order.
	groups []streamGroup
}

type namedEntry struct {
	id   string // entryID: what errors report
	name string // cleaned
	e    *estargz.TOCEntry
}

// entryID is how errors name an entry: its raw name, or its index.
func entryID(i int, e *estargz.TOCEntry) string {
	if e != nil && e.Name != "" {
		return e.Name
	}
	return "#" + strconv.Itoa(i)
}

func (v *validator) entry(i int, e *estargz.TOCEntry) error {
	id := entryID(i, e)
	if e == nil {
		return refuse(ReasonMalformed, id, errors.New("null entry"))
	}
	if e.Type == "chunk" {
		return v.chunk(id, e)
	}
	if err := v.endFile(); err != nil {
		return err
	}
	switch e.Type {
	case "dir", "reg", "symlink", "hardlink", "char", "block", "fifo":
	default:
		return refuse(ReasonMalformed, id, fmt.Errorf("unknown entry type %q", e.Type))
	}
	if err := checkName(e.Name); err != nil {
		return refuse(ReasonUnsafeName, id, err)
	}
	name := cleanName(e.Name)
	if name == "" && e.Type != "dir" {
		return refuse(ReasonUnsafeName, id, fmt.Errorf("a %s entry names the root directory", e.Type))
	}
	if _, dup := v.byName[name]; dup {
		return refuse(ReasonDuplicateName, id, fmt.Errorf("%q is named by more than one entry", name))
	}
	v.byName[name] = e
	ne := namedEntry{id: id, name: name, e: e}
	v.names = append(v.names, ne)
	if err := checkAttrs(e); err != nil {
		return refuse(ReasonMalformed, id, err)
	}
	switch e.Type {
	case "reg":
		return v.reg(ne)
	case "hardlink":
		if err := checkName(e.LinkName); err != nil {
			return refuse(ReasonBadLink, id, fmt.Errorf("hard link target: %w", err))
		}
		v.hardlinks = append(v.hardlinks, ne)
	case "symlink":
		// The target may point anywhere: the kernel resolves it inside the
		// container's root. It must only be something symlink(2) accepts.
		if err := checkSymlinkTarget(e.LinkName); err != nil {
			return refuse(ReasonBadLink, id, err)
		}
	case "char", "block":
		if err := checkDevice(e); err != nil {
			return refuse(ReasonMalformed, id, err)
		}
	}
	return checkNoData(id, e)
}
