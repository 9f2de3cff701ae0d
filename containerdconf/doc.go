// Package containerdconf knows what containerd must be told to use lazyfs,
// per containerd line, and checks a loaded containerd configuration for it.
//
// containerd 2.x reads a drop-in from conf.d (`imports`), written in the
// config version the installed containerd writes by default; on 1.6 and 1.7
// the keys are merged into the existing config file, because 1.x's imports
// replace a plugin's whole table (an imported CRI table reset the sandbox
// image and registry config_path) and a second table of the same name stops
// containerd with "duplicated tables".
//
// Nothing here runs containerd or touches the node: ctl does that and hands
// this package the version string, the file contents and `containerd config
// dump`'s output.
package containerdconf
