package mgmtapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// logFollowInterval is how often a followed log is checked for new data and
// for rotation: polling needs no new module (inotify), and a reader does not
// notice a quarter of a second.
const logFollowInterval = 250 * time.Millisecond

// tailBlock is how much of a log is read at a time, backwards from its end,
// to find where the last lines start.
const tailBlock = 64 << 10

// logTail prints the last lines of a log and, with follow, what is written
// to it afterwards, across rotations.
type logTail struct {
	path     string
	lines    int
	follow   bool
	interval time.Duration
	out      io.Writer // flushed by the caller's writer: see flushWriter
	started  bool      // start was called: the log exists
}

// run prints the tail and follows the log until ctx ends, which is then not
// an error: following ends with an interrupt. start is called once the log
// is open, before anything is written: errors before it are the caller's to
// report (no such log), errors after it can only end the output.
func (t *logTail) run(ctx context.Context, start func()) error {
	f, err := os.Open(t.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("no log at %s (has the worker run with this log dir?): %w", t.path, errdefs.ErrNotFound)
		}
		return fmt.Errorf("failed to open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("failed to stat log %s: %w", t.path, err)
	}
	size := fi.Size()
	off, err := tailOffset(f, size, t.lines)
	if t.lines < 0 {
		off = 0 // the whole log
	}
	t.started = true
	start()
	if err == nil {
		_, err = io.Copy(t.out, io.NewSectionReader(f, off, size-off))
	}
	if err != nil || !t.follow {
		f.Close()
		if err != nil {
			return fmt.Errorf("failed to read log %s: %w", t.path, err)
		}
		return nil
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("failed to read log %s: %w", t.path, err)
	}
	return t.followFrom(ctx, f, size)
}

// followFrom copies what is appended to f (open at pos) until ctx ends. It
// switches to a new file when t.path names another file than f (lumberjack
// renames the log to a backup and creates a new one), after reading what
// was left in the old one, and starts over when f shrinks (truncated in
// place). It closes f.
func (t *logTail) followFrom(ctx context.Context, f *os.File, pos int64) error {
	defer func() { f.Close() }()
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		n, err := io.Copy(t.out, f)
		pos += n
		if err != nil {
			return fmt.Errorf("failed to read log %s: %w", t.path, err)
		}
		cur, err := f.Stat()
		if err != nil {
			return fmt.Errorf("failed to stat log %s: %w", t.path, err)
		}
		if cur.Size() < pos {
			log.G(ctx).WithField("path", t.path).Info("followed worker log was truncated; following it from its start")
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("failed to read log %s: %w", t.path, err)
			}
			pos = 0
			continue
		}
		// Between a rename and the creation of the new file the path
		// names nothing: keep the old file and look again on the next tick.
		if next, err := os.Stat(t.path); err == nil && !os.SameFile(cur, next) {
			nf, err := os.Open(t.path)
			if err == nil {
				// The writer may have appended to the old file between
				// the copy above and the rename.
				if _, err := io.Copy(t.out, f); err != nil {
					nf.Close()
					return fmt.Errorf("failed to read log %s: %w", t.path, err)
				}
				f.Close()
				f, pos = nf, 0
				log.G(ctx).WithField("path", t.path).Debug("followed worker log was rotated; following the new file")
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// tailOffset returns the offset in the first size bytes of r where its last
// n lines start. A final newline ends the last line rather than starting an
// empty one; a last line without one counts as a line.
func tailOffset(r io.ReaderAt, size int64, n int) (int64, error) {
	if n <= 0 {
		return size, nil
	}
	buf := make([]byte, tailBlock)
	found := 0
	for end := size; end > 0; {
		start := max(end-tailBlock, 0)
		b := buf[:end-start]
		if _, err := r.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' || start+int64(i) == size-1 {
				continue
			}
			if found++; found == n {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}
