package remote

import (
	"os"
	"syscall"
)

// stampOf identifies the current content of the file at path without
// reading it: a file replaced by rename (how tools write config.json) has
// a new inode, one edited in place a new size or mtime.
func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{exists: true, size: fi.Size(), mtime: fi.ModTime()}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = s.Ino
	}
	return st
}
