// Package config reads the snapshotter's TOML configuration,
// /etc/lazyfs/config.toml by default.
//
// The file is optional and so is every key in it: Default holds the value of
// each key, and a document only overrides the keys it sets
// (misc/config.toml lists them all, annotated). Parse and Load are strict on
// purpose, because a typo in a configuration that is silently ignored shows
// up much later as a node that behaves differently from its neighbours:
// unknown keys, values of the wrong type and invalid values are all errors,
// and every problem of a document is reported at once, each with the dotted
// key, its line and what is allowed:
//
//	config.toml:7: workers.mode: "per-node" is not one of "per-image", "shared"
//
// Sizes (ByteSize) are written as an integer number of bytes or as a string
// with a unit ("64MiB", "100MB"); durations (Duration) as a Go duration
// string ("10s", "1m30s").
//
// The package only describes the configuration: cmd/snapshotter turns a
// Config into the options of the packages that implement it, so no other
// package depends on this one.
package config
