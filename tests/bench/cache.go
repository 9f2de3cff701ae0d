package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// dropCaches empties the kernel's page, dentry and inode caches, so that a
// timed phase starts cold: the full pull's freshly unpacked files and the
// registry's blob files would otherwise be read from memory. It needs root
// and affects the whole machine. Dirty pages are written back first, since
// only clean ones can be dropped.
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return fmt.Errorf("failed to drop the page cache: %w", err)
	}
	return nil
}
