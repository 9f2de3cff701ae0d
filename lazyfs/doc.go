// Package lazyfs is the read-only FUSE filesystem that serves one lazily
// loaded eStargz layer, as a lower layer of the overlay a container runs on.
//
// It is built for failover (FAILOVER.md): the server is stateless. Every
// identifier the kernel holds is derived from the layer's table of contents
// alone — a NodeId is a node's rank in the sorted list of its paths (root =
// 1), the generation is constant, a file handle is the NodeId and a
// directory offset is an index into the sorted child list — so a successor
// worker that loads the same TOC answers every request the kernel may send
// after a takeover. FORGET is ignored: there is nothing to forget.
//
// The pieces:
//
//	NewTree  builds the layer's directory tree from its TOC, as overlayfs
//	         must see it in a lower layer (whiteouts become 0/0 character
//	         devices, opaque markers an answer to trusted.overlay.opaque,
//	         eStargz bookkeeping files hidden), in a compact form.
//	NewFS    wraps a Tree as a go-fuse fuse.RawFileSystem (raw API only;
//	         go-fuse's fs package keeps node tables in memory and cannot be
//	         taken over). File contents come from a FileReader.
//	Serve    runs the FUSE read loop on a /dev/fuse fd through
//	         fuse.ProtocolServer, for a fresh mount (answering INIT) or for a
//	         takeover (replaying the saved INIT, then FUSE_NOTIFY_RESEND).
//
// Never touch a mount from a goroutine that serves it: a stat of the
// mountpoint blocks until some reader goroutine answers it.
package lazyfs
