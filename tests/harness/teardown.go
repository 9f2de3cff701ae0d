package harness

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// The helpers below clean up what a helper's processes left under its base
// dir. A base dir is created by the harness with a random name, so a process
// or mount that refers to it can only come from this harness instance.

// newBaseDir creates a directory with a short path: unix socket paths are
// limited to 108 bytes and containerd's shim socket_dir to 42, and t.TempDir
// paths (which embed the test name) exceed both.
func newBaseDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("/tmp", "lz"+prefix+"-")
	if err != nil {
		return "", fmt.Errorf("failed to create base dir: %w", err)
	}
	return dir, nil
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("failed to read mountinfo: %w", err)
	}
	var mps []string
	for _, m := range infos {
		mps = append(mps, m.Mountpoint)
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	return mps, nil
}

// unmountUnder unmounts everything at or below dir. A mount that is busy
// (a FUSE mount whose server hangs, a shell still inside) is detached, so
// teardown never blocks on it.
func unmountUnder(dir string) error {
	// Mounts may be stacked on one point: repeat until none is left.
	for range 8 {
		mps, err := mountsUnder(dir)
		if err != nil || len(mps) == 0 {
			return err
		}
		for _, mp := range mps {
			if err := unix.Unmount(mp, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
					return fmt.Errorf("failed to unmount %s: %w", mp, err)
				}
			}
		}
	}
	mps, err := mountsUnder(dir)
	if err == nil && len(mps) > 0 {
		err = fmt.Errorf("mounts left under %s: %v", dir, mps)
	}
	return err
}

// killProcessesUsing SIGKILLs every process (except this one) whose command
// line names a path under dir or that holds a unix socket bound under dir:
// lazyfsd workers outlive a snapshotter by design, and shims outlive
// containerd, so stopping the parent is not enough.
func killProcessesUsing(dir string) ([]int, error) {
	pids, err := processesUsing(dir)
	if err != nil {
		return nil, err
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return pids, fmt.Errorf("failed to kill pid %d: %w", pid, err)
		}
	}
	// They are not our children: poll until each is gone or a zombie.
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return pids, nil
}

func processesUsing(dir string) ([]int, error) {
	sockets, err := unixSocketsUnder(dir)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("failed to list processes: %w", err)
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if cmdlineMentions(pid, dir) || holdsSocket(pid, sockets) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func cmdlineMentions(pid int, dir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	for _, arg := range strings.Split(string(b), "\x00") {
		if arg == dir || strings.Contains(arg, dir+"/") {
			return true
		}
	}
	return false
}

// unixSocketsUnder returns the inodes of the unix sockets bound to a path
// under dir (listeners and the connections they accepted).
func unixSocketsUnder(dir string) (map[string]bool, error) {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return nil, fmt.Errorf("failed to list unix sockets: %w", err)
	}
	defer f.Close()
	inodes := map[string]bool{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fields := strings.Fields(s.Text())
		if len(fields) >= 8 && strings.HasPrefix(fields[7], dir+"/") {
			inodes[fields[6]] = true
		}
	}
	return inodes, s.Err()
}

func holdsSocket(pid int, inodes map[string]bool) bool {
	if len(inodes) == 0 {
		return false
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") && inodes[strings.TrimSuffix(link[len("socket:["):], "]")] {
			return true
		}
	}
	return false
}

// alive reports whether pid runs (a zombie has finished running).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// removeBaseDir removes a base dir after checking that nothing is mounted
// below it: RemoveAll would otherwise descend into a mounted filesystem.
func removeBaseDir(dir string) error {
	mps, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(mps) > 0 {
		return fmt.Errorf("not removing %s: still mounted: %v", dir, mps)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("failed to remove %s: %w", dir, err)
	}
	return nil
}
