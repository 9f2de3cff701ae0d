package cache

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// writeFile stores what write writes under path, atomically and on its
// own (chunks go through the batching writer instead; its caller skips a
// name that is there already): the bytes are written
// to a temporary file in the same file system, as they come, and fsynced
// before the rename, so that after a crash the name holds either nothing
// or the whole file (without the fsync, a file system may persist the
// rename before the data and leave a torn file under the name).
func (s *Store) writeFile(path, tmpPrefix string, write func(w io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), tmpPrefix+".*")
	if err != nil {
		return fmt.Errorf("failed to create cache file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("failed to write cache file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("failed to sync cache file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close cache file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("failed to create cache directory: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("failed to rename cache file into place: %w", err)
	}
	return nil
}
