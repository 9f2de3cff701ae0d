// Package cache is the on-disk chunk cache: verified, decompressed eStargz
// chunks kept under one directory (by default <root>/cache) and shared by
// every worker of the node, content-addressed by the chunk's digest (the
// TOC's chunkDigest), so that a chunk used by two layers or two images is
// stored once and a restarted worker or snapshotter finds what was fetched
// before.
//
// Layout:
//
//	<dir>/chunks/<algorithm>/<first two hex digits>/<hex digest>   one chunk
//	<dir>/tmp/<hex digest>.<random>                                a write in progress
//
// Writes are atomic: a chunk is written to tmp/, made durable (one
// syncfs(2) per batch of chunks), then renamed to its name, so a name never
// points at a partial file, even after a crash. The directory is not
// synced: a rename lost to a crash is only a miss. Writes run in the
// background, off the read path, through a bounded queue.
// Reads verify size and digest again, because disks and operators can
// damage files: a file that does not match its name is deleted, counted
// (lazyfs_cache_corrupt_total) and reported as a miss, never served.
//
// Recency is the file's atime, which Store.Get sets itself (at most once a
// minute per file) rather than relying on the kernel: relatime and noatime,
// the usual mount options, leave atimes days behind. Keeping recency in the
// files themselves needs no index that workers and the snapshotter would
// have to share, lock and repair after a crash; the price is that eviction
// walks the tree.
//
// One process evicts (the snapshotter, Evictor): least recently used first,
// down to its budget. Readers open a file before reading it and read through
// that descriptor, so eviction never takes a chunk from a reader mid-read:
// on Linux unlink(2) removes the name, and the inode lives on until its last
// descriptor is closed. A reader that comes after the unlink gets a miss and
// fetches the chunk again.
package cache
