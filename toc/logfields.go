package toc

// Log field names shared across lazyfs (DESIGN.md, STYLE.md §3).
const logLayerDigest = "layer_digest"
