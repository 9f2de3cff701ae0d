package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// manyResult is the many-entry scenario of one run.
type manyResult struct {
	// Refused is set when the layer was not mounted lazily (a worker limit
	// or another reason sent it to ordinary unpack): a finding, and no
	// worker to measure. Reason holds the snapshotter's log lines.
	Refused bool     `json:"refused"`
	Reason  []string `json:"reason,omitempty"`

	// PullSeconds is the lazy pull: manifest, TOC fetch, parse, mount.
	PullSeconds   float64 `json:"pull_seconds"`
	RegistryBytes int64   `json:"registry_bytes"`

	WorkerID  string    `json:"worker_id,omitempty"`
	WorkerPID int       `json:"worker_pid,omitempty"`
	AfterPull memStatus `json:"after_pull"`
	AfterWalk memStatus `json:"after_walk"`

	// WalkSeconds is the time to readdir every directory and lstat every
	// entry through the rootfs view; Entries is what it found.
	WalkSeconds float64 `json:"walk_seconds"`
	Entries     int     `json:"entries"`
}

// pullMany pulls the many-entry image lazily and measures the memory of the
// worker that serves it, before and after a walk of the whole tree.
func pullMany(ctx context.Context, st *stack, ref string) (_ manyResult, err error) {
	var r manyResult
	if err := dropCaches(); err != nil {
		return r, err
	}
	st.proxy.Reset()
	start := time.Now()
	if _, err := st.ctrd.Ctr(ctx, "image", "pull", "--plain-http", "--snapshotter", "lazyfs", ref); err != nil {
		return r, err
	}
	r.PullSeconds = time.Since(start).Seconds()
	r.RegistryBytes = st.proxy.TotalBlobBytes()
	progress("    lazy pull %s, registry served %s", seconds(r.PullSeconds), mib(r.RegistryBytes))

	w, err := findWorker(ctx, st.sn.RunDir(), ref)
	if err != nil {
		return r, err
	}
	if w == nil {
		r.Refused = true
		for _, l := range st.notableLogLines() {
			if strings.Contains(l, "falling back") {
				r.Reason = append(r.Reason, l)
			}
		}
		progress("    FINDING: no worker serves %s: the layer was not mounted lazily", ref)
		return r, nil
	}
	r.WorkerID, r.WorkerPID = w.id, w.pid
	if r.AfterPull, err = readMemStatus(ctx, w); err != nil {
		return r, err
	}
	progress("    worker %s (pid %d) after pull: %s", w.id, w.pid, r.AfterPull)

	dir := filepath.Join(st.dir, "view-many")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, fmt.Errorf("failed to create view dir: %w", err)
	}
	cleanup, err := harness.MountImageRootfs(ctx, st.cl, ref, "lazyfs", dir)
	if err != nil {
		return r, err
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	start = time.Now()
	if r.Entries, err = walkLstat(ctx, dir); err != nil {
		return r, err
	}
	r.WalkSeconds = time.Since(start).Seconds()
	if r.AfterWalk, err = readMemStatus(ctx, w); err != nil {
		return r, err
	}
	progress("    walked %d entries in %s; worker after walk: %s", r.Entries, seconds(r.WalkSeconds), r.AfterWalk)
	return r, nil
}

// walkLstat readdirs every directory under root and lstats every entry, as
// `find` or an image scanner does, and returns the number of entries.
func walkLstat(ctx context.Context, root string) (int, error) {
	count := 0
	var visit func(dir string) error
	visit = func(dir string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("failed to open %s: %w", dir, err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("failed to read %s: %w", dir, err)
		}
		for _, name := range names {
			p := filepath.Join(dir, name)
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return fmt.Errorf("failed to lstat %s: %w", p, err)
			}
			count++
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				if err := visit(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := visit(root)
	return count, err
}
