package lazyfs

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/stargz-snapshotter/estargz"

	"github.com/lazyfs/lazyfs/internal/doubling"

	"github.com/lazyfs/lazyfs/chunks"
)

// Permissions of the directories a TOC only implies (parents it does not
// list), as an unpack would create them.
const impliedDirPerm = 0o755

// maxIndex is the most elements the tree's arrays indexed by 32-bit fields
// may hold: its nodes (so its NodeIds), its chunks and the bytes of its
// names. A variable so that tests reach each bound with a few entries.
var maxIndex = math.MaxUint32

// NewTree builds the directory tree of a layer from its table of contents.
// tocOffset is where the TOC starts in the blob: the last payload ends there.
//
// NodeIds depend on the TOC alone: the root is 1, every other node gets 2,
// 3, … in the sorted order of its cleaned path (after whiteout renaming),
// over the TOC's entries and the parent directories it only implies; hard
// links share their target's NodeId. Loading the same TOC again gives the
// same ids, which is what lets a successor worker take a mount over.
//
// Overlay semantics are applied on the way: ".wh.<name>" becomes a 0/0
// character device <name> (an entry of the same name in the layer wins over
// it, as whiteouts only apply to lower layers; a directory recreated that
// way is made opaque, so that the deleted lower one does not show through);
// ".wh..wh..opq" marks its directory opaque and is hidden; aufs bookkeeping
// (".wh..wh.*") and the eStargz landmark files and stargz.index.json at the
// root are hidden; "trusted.*" xattrs are dropped.
//
// The tree keeps no reference to toc itself (only to some of its strings
// and xattr values), so the caller may drop it. The TOC is expected to have
// been validated; NewTree still returns an error wrapping
// errdefs.ErrInvalidArgument, never panics, on input it cannot serve.
// A TreeBuilder builds the same tree from entries as they are decoded.
func NewTree(toc *estargz.JTOC, tocOffset int64) (*Tree, error) {
	if toc == nil {
		return nil, fmt.Errorf("no table of contents: %w", errdefs.ErrInvalidArgument)
	}
	var b TreeBuilder
	b.Expect(len(toc.Entries))
	for _, e := range toc.Entries {
		if err := b.Add(e); err != nil {
			return nil, err
		}
	}
	return b.Tree(tocOffset)
}

// A TreeBuilder builds the Tree NewTree would build from a TOC, from its
// entries added one at a time in TOC order, as a decoder hands them out
// (it is a toc.Sink): it keeps a compact record of each entry and never
// the entry, so a layer's whole decoded TOC is never held. The zero value
// is ready to use; a TreeBuilder builds one tree.
type TreeBuilder struct {
	// err is the first error; Add and Tree return it from then on.
	err error
	// n counts the entries added: the next one's index in the TOC.
	n     int
	items []item
	// recs are the nodes of the entries that have one (all but hard
	// links), in TOC order after an unused recs[0]; an item's rec indexes
	// it, or, for a hard link, links. fillNodes turns recs into the tree's
	// nodes in place.
	recs  []node
	links []string // hard link targets, raw
	// opaque are the directories holding an opaque marker.
	opaque []string
	// offsets are the non-zero offsets of the entries, in TOC order
	// without repeats next to each other; Tree sorts them.
	offsets []int64
	// inFile is whether the last entry that is not a chunk was a regular
	// file, whose "chunk" entries may follow; file is that file, if its
	// chunks are kept.
	inFile bool
	file   openFile
	t      Tree
	// lastMtime caches the last parsed timestamp: layers built
	// reproducibly give most entries the same one.
	lastMtime string
	lastSec   int64
	lastNsec  uint32

	// Set by Tree.
	tocOffset int64
	nextID    uint64
}

// itemKind says where a path of the tree comes from.
type itemKind uint8

const (
	kindEntry    itemKind = iota // a TOC entry
	kindWhiteout                 // a TOC whiteout entry, renamed
	kindImplied                  // a parent directory the TOC does not list
)

// entryType is a TOC entry's type (other than "chunk"), in a byte.
type entryType uint8

const (
	typeDir entryType = iota
	typeReg
	typeSymlink
	typeHardlink
	typeChar
	typeBlock
	typeFifo
)

var entryTypes = map[string]entryType{
	"dir": typeDir, "reg": typeReg, "symlink": typeSymlink, "hardlink": typeHardlink,
	"char": typeChar, "block": typeBlock, "fifo": typeFifo,
}

// item is a path of the tree while it is built.
type item struct {
	path   string // clean, "" for the root, after whiteout renaming
	entry  int32  // index in the TOC, -1 for implied directories
	rec    uint32 // index in recs, or in links for a hard link
	id     uint32 // NodeId
	parent uint32 // NodeId of the parent directory
	kind   itemKind
	typ    entryType
}

// invalid describes why entry i, named name, cannot be served.
func invalid(i int, name string, format string, args ...any) error {
	return fmt.Errorf("TOC entry %d (%q): %s: %w", i, name, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// Expect makes room for about n entries (toc.ExpectingSink), before the
// first is added: the builder then grows none of its arrays (copying
// them) unless more come. Any entry may be a regular file or a chunk, so
// the room for chunks is made for n too. Called later, it does nothing.
func (b *TreeBuilder) Expect(n int) {
	if b.n != 0 {
		return // too late: what was added is in the arrays
	}
	n = max(n, 0)
	b.items = make([]item, 0, n+1) // and the root, if implied
	b.recs = make([]node, 1, n+1)  // recs[0] is unused
	b.t.chunks = make([]chunks.Chunk, 0, n)
	b.offsets = make([]int64, 0, n)
}

// Add adds the next entry of the TOC. It keeps e's strings and xattr
// values, never e, which the caller may reuse. After an error, Add and
// Tree return that error.
func (b *TreeBuilder) Add(e *estargz.TOCEntry) error {
	if b.err == nil {
		b.err = b.add(e)
	}
	return b.err
}

func (b *TreeBuilder) add(e *estargz.TOCEntry) error {
	i := b.n
	if i >= math.MaxInt32 {
		return fmt.Errorf("TOC has more than %d entries: %w", i, errdefs.ErrInvalidArgument)
	}
	b.n++
	if e == nil {
		return invalid(i, "", "null entry")
	}
	if len(b.recs) == 0 {
		b.recs = doubling.Append(b.recs, node{}) // NodeId 0 is no node
	}
	if e.Offset > 0 && (len(b.offsets) == 0 || b.offsets[len(b.offsets)-1] != e.Offset) {
		b.offsets = doubling.Append(b.offsets, e.Offset)
	}
	if e.Type == "chunk" {
		if !b.inFile {
			return invalid(i, e.Name, "chunk entry does not follow a regular file")
		}
		return b.addChunk(i, e) // the next chunk of the file
	}
	if err := b.endFile(); err != nil {
		return err
	}
	typ, ok := entryTypes[e.Type]
	if !ok {
		return invalid(i, e.Name, "unknown entry type %q", e.Type)
	}
	b.inFile = typ == typeReg

	p := cleanPath(e.Name)
	dir, base := splitPath(p)
	it := item{path: p, entry: int32(i), kind: kindEntry, typ: typ}
	switch {
	case p == "":
		if typ != typeDir {
			return invalid(i, e.Name, "root is a %s, not a directory", e.Type)
		}
	case hasMetaComponent(dir), dir == "" && hiddenAtRoot(base):
		return nil
	case base == opaqueMarker:
		b.opaque = append(b.opaque, dir)
		return nil
	case strings.HasPrefix(base, whiteoutMetaPrefix):
		return nil
	case strings.HasPrefix(base, whiteoutPrefix):
		name := base[len(whiteoutPrefix):]
		if name == "" || name == "." || name == ".." {
			return invalid(i, e.Name, "whiteout names no file")
		}
		it.path = joinPath(dir, name)
		it.kind = kindWhiteout
	}
	// Nodes and hard links together, so that each fits its 32-bit
	// index; recs bounds the arrays holding one element per node
	// (symlink targets, xattr sets) too.
	if len(b.recs)+len(b.links) >= maxIndex {
		return invalid(i, e.Name, "too many entries")
	}
	switch {
	case it.kind == kindWhiteout:
		n := node{mode: syscall.S_IFCHR, nlink: 1} // device 0/0, no permissions, as an unpack makes it
		if err := b.fillOwnerAndTime(&n, i, e); err != nil {
			return err
		}
		it.rec = uint32(len(b.recs))
		b.recs = doubling.Append(b.recs, n)
	case typ == typeHardlink:
		it.rec = uint32(len(b.links))
		b.links = append(b.links, e.LinkName)
	default:
		it.rec = uint32(len(b.recs))
		var n node
		if err := b.fillEntry(&n, i, e, it.rec); err != nil {
			return err
		}
		b.recs = doubling.Append(b.recs, n)
	}
	b.items = doubling.Append(b.items, it)
	return nil
}

// Tree finishes the tree of the entries added. tocOffset is where the TOC
// starts in the blob: the last payload ends there.
func (b *TreeBuilder) Tree(tocOffset int64) (*Tree, error) {
	if b.err != nil {
		return nil, b.err
	}
	// Whatever happens, the builder is spent.
	b.err = fmt.Errorf("tree built already: %w", errdefs.ErrInvalidArgument)
	if err := b.endFile(); err != nil {
		return nil, err
	}
	b.tocOffset = tocOffset
	for _, step := range []func() error{
		b.sortItems,
		b.addImpliedDirs,
		b.assignIDs,
		b.fillNodes,
		b.setBlobSizes,
		b.resolveHardlinks,
		b.linkChildren,
		b.markOpaque,
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	t := b.t
	*b = TreeBuilder{err: b.err}
	return &t, nil
}

// sortItems sorts items by path and resolves paths that occur twice.
func (b *TreeBuilder) sortItems() error {
	slices.SortStableFunc(b.items, func(x, y item) int { return strings.Compare(x.path, y.path) })
	out := b.items[:0]
	for _, it := range b.items {
		if n := len(out); n > 0 && out[n-1].path == it.path {
			last := &out[n-1]
			switch {
			case it.kind == kindWhiteout || last.kind == kindWhiteout:
				// A whiteout only hides lower layers' files: the layer's
				// own entry (or an earlier identical whiteout) stays. A
				// directory recreated over its whiteout must not show
				// the lower directory's contents: it becomes opaque.
				if last.kind == kindWhiteout {
					*last = it
				}
				if b.isDir(last) {
					b.opaque = append(b.opaque, last.path)
				}
				continue
			default:
				return invalid(int(it.entry), it.path, "duplicate path %q", it.path)
			}
		}
		out = append(out, it)
	}
	b.items = out
	return nil
}

// find returns the index of the item with path p, or -1.
func (b *TreeBuilder) find(p string) int {
	i, found := slices.BinarySearchFunc(b.items, p, func(it item, p string) int { return strings.Compare(it.path, p) })
	if !found {
		return -1
	}
	return i
}

// addImpliedDirs adds the root and every parent directory the TOC does not
// list.
func (b *TreeBuilder) addImpliedDirs() error {
	implied := make(map[string]struct{})
	ensure := func(p string) {
		for p != "" {
			if _, ok := implied[p]; ok {
				return
			}
			if b.find(p) >= 0 {
				// Its own parents are ensured when its turn comes.
				return
			}
			implied[p] = struct{}{}
			p, _ = splitPath(p)
		}
	}
	prev := "\x00" // no path is NUL
	for _, it := range b.items {
		if it.path == "" {
			continue
		}
		if dir, _ := splitPath(it.path); dir != prev {
			prev = dir
			ensure(dir)
		}
	}
	for _, d := range b.opaque {
		ensure(d)
	}
	if len(b.items) == 0 || b.items[0].path != "" {
		implied[""] = struct{}{}
	}
	if len(implied) == 0 {
		return nil
	}
	for p := range implied {
		b.items = doubling.Append(b.items, item{path: p, entry: -1, kind: kindImplied})
	}
	slices.SortFunc(b.items, func(x, y item) int { return strings.Compare(x.path, y.path) })
	return nil
}

// isHardlink reports whether it is a hard link, which gets no NodeId of its
// own.
func (b *TreeBuilder) isHardlink(it *item) bool {
	return it.kind == kindEntry && it.typ == typeHardlink
}

// isDir reports whether it is a directory.
func (b *TreeBuilder) isDir(it *item) bool {
	return it.kind == kindImplied || it.kind == kindEntry && it.typ == typeDir
}

// assignIDs numbers the items in path order (items[0] is the root) and
// gives each implied directory a node in recs. recs holds a node for
// every NodeId after an unused recs[0] (and more: whiteouts their entry
// replaced), so its bound keeps the NodeIds below maxIndex too.
func (b *TreeBuilder) assignIDs() error {
	if len(b.recs) == 0 {
		b.recs = doubling.Append(b.recs, node{}) // no entry was added
	}
	implied := node{mode: syscall.S_IFDIR | impliedDirPerm, nlink: 2, size: dirSize}
	b.nextID = rootID
	for i := range b.items {
		it := &b.items[i]
		if b.isHardlink(it) {
			if i == 0 {
				return invalid(int(it.entry), it.path, "root is a hard link")
			}
			continue
		}
		if it.kind == kindImplied {
			if len(b.recs) >= maxIndex {
				return fmt.Errorf("TOC implies too many directories: %w", errdefs.ErrInvalidArgument)
			}
			it.rec = uint32(len(b.recs))
			b.recs = doubling.Append(b.recs, implied)
		}
		it.id = uint32(b.nextID)
		b.nextID++
	}
	return nil
}

// fillNodes turns recs into the tree's nodes, each at its NodeId, in
// place: recs is the largest part of the builder, and a second array of
// nodes would cost as much again while both are held. The implied
// directories get the root's time.
func (b *TreeBuilder) fillNodes() error {
	// dest[r] is the NodeId recs[r] belongs at. A rec no item refers to
	// any more (a whiteout its entry replaced) goes past the last NodeId.
	dest := make([]uint32, len(b.recs))
	for i := range b.items {
		if it := &b.items[i]; it.id != 0 {
			dest[it.rec] = it.id
		}
	}
	next := uint32(b.nextID)
	for r := 1; r < len(dest); r++ {
		if dest[r] == 0 {
			dest[r] = next
			next++
		}
	}
	// dest is a permutation: follow its cycles.
	for i := range dest {
		for dest[i] != uint32(i) {
			j := dest[i]
			b.recs[i], b.recs[j] = b.recs[j], b.recs[i]
			dest[i], dest[j] = dest[j], dest[i]
		}
	}
	b.t.nodes = b.recs[:b.nextID]
	b.recs = nil
	root := &b.t.nodes[rootID]
	for i := range b.items {
		if it := &b.items[i]; it.kind == kindImplied {
			n := &b.t.nodes[it.id]
			n.mtime, n.nsec = root.mtime, root.nsec
		}
	}
	return nil
}

// fillOwnerAndTime sets a node's owner and modification time from entry
// e, the i-th.
func (b *TreeBuilder) fillOwnerAndTime(n *node, i int, e *estargz.TOCEntry) error {
	if e.UID < 0 || e.UID > math.MaxUint32 || e.GID < 0 || e.GID > math.MaxUint32 {
		return invalid(i, e.Name, "uid %d or gid %d out of range", e.UID, e.GID)
	}
	n.uid, n.gid = uint32(e.UID), uint32(e.GID)
	if e.ModTime3339 == "" {
		return nil
	}
	if e.ModTime3339 != b.lastMtime {
		t, err := time.Parse(time.RFC3339Nano, e.ModTime3339)
		if err != nil {
			return invalid(i, e.Name, "bad modification time: %v", err)
		}
		b.lastMtime, b.lastSec, b.lastNsec = e.ModTime3339, t.Unix(), uint32(t.Nanosecond())
	}
	n.mtime, n.nsec = b.lastSec, b.lastNsec
	return nil
}

// fillEntry sets node n, recs[rec] to be, from entry e, the i-th, which is
// not a hard link. A regular file's chunks follow it: they are added
// until the next entry that is not a chunk.
func (b *TreeBuilder) fillEntry(n *node, i int, e *estargz.TOCEntry, rec uint32) error {
	if err := b.fillOwnerAndTime(n, i, e); err != nil {
		return err
	}
	perm := uint32(e.Mode) & 0o7777
	n.nlink = 1
	switch e.Type {
	case "dir":
		n.mode = syscall.S_IFDIR | perm
		n.size = dirSize
		n.nlink = 2
	case "reg":
		n.mode = syscall.S_IFREG | perm
		if e.Size < 0 {
			return invalid(i, e.Name, "negative size %d", e.Size)
		}
		n.size = e.Size
		b.t.dataBytes += uint64(e.Size)
		if err := b.openFile(i, e, rec); err != nil {
			return err
		}
	case "symlink":
		// Linux shows every symlink as 0777 whatever the archive says.
		n.mode = syscall.S_IFLNK | 0o777
		if e.LinkName == "" {
			return invalid(i, e.Name, "symlink without target")
		}
		n.size = int64(len(e.LinkName))
		n.first = uint32(len(b.t.links))
		b.t.links = append(b.t.links, e.LinkName)
	case "char", "block":
		n.mode = syscall.S_IFCHR | perm
		if e.Type == "block" {
			n.mode = syscall.S_IFBLK | perm
		}
		rdev, err := encodeDev(e.DevMajor, e.DevMinor)
		if err != nil {
			return invalid(i, e.Name, "%v", err)
		}
		n.first = rdev
	case "fifo":
		n.mode = syscall.S_IFIFO | perm
	}
	return b.addXattrs(n, i, e)
}

// encodeDev encodes a device number the way the kernel decodes fuse_attr's
// rdev (new_decode_dev): 12 bits of major, 20 of minor.
func encodeDev(major, minor int) (uint32, error) {
	if major < 0 || major > 0xfff || minor < 0 || minor > 0xfffff {
		return 0, fmt.Errorf("device %d:%d out of range", major, minor)
	}
	maj, min := uint32(major), uint32(minor)
	return min&0xff | maj<<8 | (min&^0xff)<<12, nil
}

// addXattrs keeps entry e's xattrs except trusted.* ones.
func (b *TreeBuilder) addXattrs(n *node, i int, e *estargz.TOCEntry) error {
	if len(e.Xattrs) == 0 {
		return nil
	}
	set := make([]xattr, 0, len(e.Xattrs))
	for name, value := range e.Xattrs {
		if strings.HasPrefix(name, trustedPrefix) {
			continue
		}
		if name == "" {
			return invalid(i, e.Name, "xattr without a name")
		}
		set = append(set, xattr{name: name, value: value})
	}
	if len(set) == 0 {
		return nil
	}
	slices.SortFunc(set, func(x, y xattr) int { return strings.Compare(x.name, y.name) })
	b.t.xattrs = append(b.t.xattrs, set)
	n.xattrs = uint32(len(b.t.xattrs))
	return nil
}

// resolveHardlinks gives every hard link its target's NodeId and counts the
// target's links.
func (b *TreeBuilder) resolveHardlinks() error {
	for i := range b.items {
		it := &b.items[i]
		if !b.isHardlink(it) {
			continue
		}
		target := it
		for steps := 0; b.isHardlink(target); steps++ {
			link := b.links[target.rec]
			j := b.find(cleanPath(link))
			if j < 0 || steps > len(b.items) {
				return invalid(int(it.entry), it.path, "hard link target %q not found", link)
			}
			target = &b.items[j]
		}
		if target.kind != kindEntry || b.isDir(target) {
			return invalid(int(it.entry), it.path, "hard link target %q is not a file", target.path)
		}
		it.id = target.id
		n := &b.t.nodes[target.id]
		if n.nlink == math.MaxUint32 {
			return invalid(int(it.entry), it.path, "too many links")
		}
		n.nlink++
	}
	return nil
}

// linkChildren builds every directory's sorted list of entries. Items are
// sorted by path, and siblings share the "dir/" prefix, so appending them in
// item order sorts each directory by name.
func (b *TreeBuilder) linkChildren() error {
	t := &b.t
	arena := 0
	prevDir := "\x00" // no path is NUL: the first item sets prevIdx
	var prevIdx int
	for i := 1; i < len(b.items); i++ {
		it := &b.items[i]
		dir, base := splitPath(it.path)
		if dir != prevDir {
			prevDir, prevIdx = dir, b.find(dir)
		}
		if prevIdx < 0 || !b.isDir(&b.items[prevIdx]) {
			return invalid(int(it.entry), it.path, "parent of %q is not a directory", it.path)
		}
		parent := b.items[prevIdx].id
		it.parent = parent
		t.nodes[parent].count++
		if b.isDir(it) {
			t.nodes[parent].nlink++
			t.nodes[it.id].parent = parent
		}
		arena += len(base)
	}
	t.nodes[rootID].parent = rootID
	if arena > maxIndex {
		return fmt.Errorf("names of the TOC take %d bytes: %w", arena, errdefs.ErrInvalidArgument)
	}

	next := uint32(0)
	for id := range t.nodes {
		n := &t.nodes[id]
		if id == 0 || !n.isDir() {
			continue
		}
		n.first, next = next, next+n.count
		n.count = 0
	}
	t.dirents = make([]dirent, next)
	var names strings.Builder
	names.Grow(arena)
	for i := 1; i < len(b.items); i++ {
		it := &b.items[i]
		_, base := splitPath(it.path)
		d := dirent{nameOff: uint32(names.Len()), nameLen: uint32(len(base)), id: it.id}
		names.WriteString(base)
		p := &t.nodes[it.parent]
		t.dirents[p.first+p.count] = d
		p.count++
	}
	t.names = names.String()
	return nil
}

// markOpaque records the directories holding an opaque marker.
func (b *TreeBuilder) markOpaque() error {
	for _, d := range b.opaque {
		j := b.find(d)
		if j < 0 || !b.isDir(&b.items[j]) {
			return fmt.Errorf("opaque marker in %q, which is not a directory: %w", d, errdefs.ErrInvalidArgument)
		}
		b.t.opaque = append(b.t.opaque, b.items[j].id)
	}
	slices.Sort(b.t.opaque)
	b.t.opaque = slices.Compact(b.t.opaque)
	return nil
}
