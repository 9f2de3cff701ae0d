// Package convert turns an image's tar layers into eStargz layers, so that
// lazyfs can mount them lazily.
//
// It plugs into containerd's converter (core/images/converter):
// LayerConvertFunc converts one layer blob inside a content store,
// IndexConvertFunc walks an index or manifest with it (rewriting the config's
// diff_ids and the GC labels that keep the new blobs referenced), and Image
// converts an image known to a containerd daemon into a new image record.
//
// A converted layer is an OCI gzip layer whose descriptor carries the
// annotations a lazy mount needs: the digest of its table of contents
// (estargz.TOCJSONDigestAnnotation), its uncompressed size
// (estargz.StoreUncompressedSizeAnnotation) and its diffID
// (containerd.io/uncompressed). Layers that already carry a TOC digest are
// left as they are; gzip layers that already are eStargz but lack the
// annotations (Docker manifests cannot hold any) get them, computed from the
// blob, without being rebuilt.
//
// Caveats:
//   - Building a layer needs scratch space for its uncompressed tar and its
//     compressed parts in os.TempDir() (set TMPDIR to move it): estargz.Build
//     has no option for the directory. Builds run at most GOMAXPROCS at a time
//     per converter to bound that space.
//   - The new blobs are only referenced once the manifest that names them is
//     written. Against a containerd content store, run the ConvertFuncs under
//     a lease (Image does: converter.Convert takes one).
//   - Manifests of an index that do not match Options.Platform are dropped
//     from the converted index, as containerd's converter does.
package convert
