package toc

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/containerd/stargz-snapshotter/estargz"

	"github.com/lazyfs/lazyfs/internal/doubling"
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
	if l.TOC == nil {
		return refuse(ReasonMalformed, "", errors.New("no table of contents"))
	}
	if err := checkPlacement(l.BlobSize, l.TOCOffset); err != nil {
		return err
	}
	if err := checkVersion(l.TOC.Version); err != nil {
		return err
	}
	if len(l.TOC.Entries) > lim.MaxEntries {
		return refuse(ReasonTooManyEntries, "", fmt.Errorf("TOC has %d entries, limit is %d", len(l.TOC.Entries), lim.MaxEntries))
	}
	v := newValidator(l.TOCOffset)
	for i, e := range l.TOC.Entries {
		if err := v.entry(i, e); err != nil {
			return err
		}
	}
	return v.finish()
}

// checkPlacement refuses a blob size or TOC offset no blob can have.
func checkPlacement(blobSize, tocOffset int64) error {
	switch {
	case blobSize <= 0:
		return refuse(ReasonBadSize, "", fmt.Errorf("blob size %d is not positive", blobSize))
	case tocOffset < 0 || tocOffset >= blobSize:
		return refuse(ReasonBadOffset, "", fmt.Errorf("TOC offset %d is outside the %d-byte blob", tocOffset, blobSize))
	}
	return nil
}

func checkVersion(v int) error {
	if v != tocVersion {
		return refuse(ReasonUnsupportedFormat, "", fmt.Errorf("TOC version %d is not %d", v, tocVersion))
	}
	return nil
}

// validator checks a TOC entry by entry (entry), then as a whole (finish).
// It keeps what the checks across entries need, and no pointer to an
// entry: a TOC decoded as a stream (FetchTo, Store.GetTo) is never held
// whole, and this state is most of what validating it costs. Names are
// kept in slices, in TOC order, and sorted once at the end (a map of
// 300,000 names costs three times as much).
type validator struct {
	tocOffset int64
	// names are the cleaned names of the non-chunk entries ("" is the
	// root) in TOC order, and kinds their types; raw holds the raw name
	// of those whose raw name differs (a directory's trailing slash), by
	// position, for errors, which name entries as the layer wrote them.
	names []string
	kinds []entryKind
	raw   map[int32]string
	// hardlinks are the positions of the hard links in names; linkOf
	// holds each one's raw target by its cleaned name.
	hardlinks []int32
	linkOf    map[string]string
	// sorted are the positions of names in name order, once finish ran.
	sorted []int32
	// file is the regular file whose chunks are being read, if inFile.
	file   fileState
	inFile bool
	// group is the last compressed stream holding data (hasGroup), and
	// spanErr the first stream found to need more bytes than it can hold,
	// reported once every entry passed (as a check of the whole TOC).
	group    streamGroup
	hasGroup bool
	spanErr  error
}

func newValidator(tocOffset int64) *validator {
	return &validator{tocOffset: tocOffset, raw: make(map[int32]string), linkOf: make(map[string]string)}
}

// rawName returns the raw name of the entry at position pos of names.
func (v *validator) rawName(pos int32) string {
	if r, ok := v.raw[pos]; ok {
		return r
	}
	return v.names[pos]
}

// entryKind is a validated entry's type, in a byte.
type entryKind uint8

const (
	kindDir entryKind = iota
	kindReg
	kindSymlink
	kindHardlink
	kindChar
	kindBlock
	kindFifo
)

// entryKinds maps TOC entry types (except "chunk") to kinds; kindNames is
// its inverse, for messages.
var (
	entryKinds = map[string]entryKind{
		"dir": kindDir, "reg": kindReg, "symlink": kindSymlink, "hardlink": kindHardlink,
		"char": kindChar, "block": kindBlock, "fifo": kindFifo,
	}
	kindNames = [...]string{"dir", "reg", "symlink", "hardlink", "char", "block", "fifo"}
)

func (k entryKind) String() string { return kindNames[k] }

// finish runs the checks that need every entry: the last file's chunks,
// unique names, the compressed streams' sizes, parents and hard links.
func (v *validator) finish() error {
	if err := v.endFile(); err != nil {
		return err
	}
	if err := v.checkDuplicates(); err != nil {
		return err
	}
	if v.hasGroup {
		v.checkSpan(v.tocOffset)
	}
	if v.spanErr != nil {
		return v.spanErr
	}
	if err := v.checkParents(); err != nil {
		return err
	}
	return v.checkHardlinks()
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
	kind, ok := entryKinds[e.Type]
	if !ok {
		return refuse(ReasonMalformed, id, fmt.Errorf("unknown entry type %q", e.Type))
	}
	if err := checkName(e.Name); err != nil {
		return refuse(ReasonUnsafeName, id, err)
	}
	name := cleanName(e.Name)
	if name == "" && kind != kindDir {
		return refuse(ReasonUnsafeName, id, fmt.Errorf("a %s entry names the root directory", e.Type))
	}
	if len(v.names) == math.MaxInt32 {
		return refuse(ReasonTooManyEntries, id, fmt.Errorf("TOC has more than %d named entries", math.MaxInt32))
	}
	pos := int32(len(v.names))
	v.names = doubling.Append(v.names, name)
	v.kinds = doubling.Append(v.kinds, kind)
	if name != e.Name {
		v.raw[pos] = e.Name
	}
	if err := checkAttrs(e); err != nil {
		return refuse(ReasonMalformed, id, err)
	}
	switch kind {
	case kindReg:
		return v.reg(id, name, e)
	case kindHardlink:
		if err := checkName(e.LinkName); err != nil {
			return refuse(ReasonBadLink, id, fmt.Errorf("hard link target: %w", err))
		}
		v.hardlinks = append(v.hardlinks, pos)
		v.linkOf[name] = e.LinkName
	case kindSymlink:
		// The target may point anywhere: the kernel resolves it inside the
		// container's root. It must only be something symlink(2) accepts.
		if err := checkSymlinkTarget(e.LinkName); err != nil {
			return refuse(ReasonBadLink, id, err)
		}
	case kindChar, kindBlock:
		if err := checkDevice(e); err != nil {
			return refuse(ReasonMalformed, id, err)
		}
	}
	return checkNoData(id, e)
}
