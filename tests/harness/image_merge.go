package harness

import (
	"path"
	"strings"
)

// Whiteout names of the OCI layer format.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// mergeLayers applies layers in order the way an unpacker does and returns
// the resulting tree keyed by cleaned absolute path. Whiteouts delete from
// the layers below only, so their position inside a layer does not matter.
// A hard link comes back with its target's content, as a reader sees it.
func mergeLayers(layers []Layer) map[string]File {
	tree := map[string]File{}
	for _, l := range layers {
		for _, f := range l {
			p := path.Clean("/" + f.Path)
			dir, base := path.Split(p)
			switch {
			case base == whiteoutOpaque:
				removeTree(tree, path.Clean(dir), false)
			case strings.HasPrefix(base, whiteoutPrefix):
				removeTree(tree, path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)), true)
			}
		}
		for _, f := range l {
			p := path.Clean("/" + f.Path)
			if strings.HasPrefix(path.Base(p), whiteoutPrefix) {
				continue
			}
			if old, ok := tree[p]; ok && (!old.Mode.IsDir() || !f.Mode.IsDir() || f.Hardlink) {
				removeTree(tree, p, false)
			}
			if f.Hardlink {
				target := tree[path.Clean("/"+f.Linkname)]
				target.Path = f.Path
				f = target
			}
			f.Path = p
			tree[p] = f
		}
	}
	return tree
}

// removeTree deletes everything below p from tree, and p itself if self.
func removeTree(tree map[string]File, p string, self bool) {
	prefix := strings.TrimSuffix(p, "/") + "/"
	for k := range tree {
		if (self && k == p) || strings.HasPrefix(k, prefix) {
			delete(tree, k)
		}
	}
}
