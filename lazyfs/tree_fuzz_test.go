package lazyfs

import (
	"encoding/json"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// FuzzNewTree checks that no TOC makes NewTree panic, and that every tree
// it accepts is consistent: each directory entry can be looked up again
// and leads to a node.
func FuzzNewTree(f *testing.F) {
	for _, seed := range []string{
		`{"version":1,"entries":[{"name":"a/b","type":"reg","size":3,"offset":10,"chunkDigest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}]}`,
		`{"version":1,"entries":[{"name":".wh.x","type":"reg"},{"name":"x/","type":"dir"},{"name":"y","type":"hardlink","linkName":"z"}]}`,
		`{"version":1,"entries":[{"name":"d/.wh..wh..opq","type":"reg"},{"name":"l","type":"symlink","linkName":"d"},{"name":"c","type":"char","devMajor":1}]}`,
		`{"version":1,"entries":[{"name":"f","type":"reg","size":20,"offset":5,"chunkSize":10,"chunkDigest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},{"name":"f","type":"chunk","offset":9,"chunkOffset":10,"chunkDigest":"sha256:0000000000000000000000000000000000000000000000000000000000000001"}]}`,
	} {
		f.Add([]byte(seed), int64(100))
	}
	f.Fuzz(func(t *testing.T, data []byte, tocOffset int64) {
		var toc estargz.JTOC
		if json.Unmarshal(data, &toc) != nil {
			return
		}
		tr, err := NewTree(&toc, tocOffset)
		if err != nil {
			return
		}
		for id := 1; id <= tr.Len(); id++ {
			n := tr.node(uint64(id))
			for _, d := range tr.children(n) {
				got, ok := tr.lookup(n, tr.name(d))
				if !ok || got != d.id || tr.node(uint64(got)) == nil {
					t.Fatalf("dir %d: %q does not resolve to %d", id, tr.name(d), d.id)
				}
			}
			for _, c := range tr.fileChunks(n) {
				if c.BlobOffset <= 0 || c.BlobSize <= 0 || c.BlobOffset+c.BlobSize > tocOffset {
					t.Fatalf("node %d: chunk %+v outside the payload", id, c)
				}
			}
		}
	})
}
