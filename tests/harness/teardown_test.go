package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
		t.Fatalf("mount tmpfs at %s: %v", dir, err)
	}
}

func testBaseDir(t *testing.T) string {
	t.Helper()
	base, err := newBaseDir("t")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = unmountUnder(base)
		_ = os.RemoveAll(base)
	})
	return base
}

func TestUnmountUnder(t *testing.T) {
	RequireRoot(t)
	base := testBaseDir(t)
	// A directory whose name only starts like base's must be left alone.
	sibling := testBaseDir(t)
	if err := os.Rename(sibling, base+"x"); err != nil {
		t.Fatal(err)
	}
	sibling = base + "x"
	t.Cleanup(func() {
		_ = unmountUnder(sibling)
		_ = os.RemoveAll(sibling)
	})
	mountTmpfs(t, sibling)
	mountTmpfs(t, filepath.Join(base, "a"))
	mountTmpfs(t, filepath.Join(base, "a", "nested"))
	mountTmpfs(t, filepath.Join(base, "stacked"))
	mountTmpfs(t, filepath.Join(base, "stacked"))
	// A busy mount (a process has its cwd inside) is detached, not waited for.
	mountTmpfs(t, filepath.Join(base, "busy"))
	busy := exec.Command("sleep", "600")
	busy.Dir = filepath.Join(base, "busy")
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Process.Kill(); _ = busy.Wait() })

	if err := unmountUnder(base); err != nil {
		t.Fatalf("unmountUnder: %v", err)
	}
	if mps, _ := mountsUnder(base); len(mps) != 0 {
		t.Errorf("mounts left under %s: %v", base, mps)
	}
	if mps, _ := mountsUnder(sibling); len(mps) != 1 {
		t.Errorf("mounts under the sibling %s: %v, want its own one", sibling, mps)
	}
}

func TestKillProcessesUsing(t *testing.T) {
	base := testBaseDir(t)
	start := func(cmd *exec.Cmd) *exec.Cmd {
		t.Helper()
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	sock := filepath.Join(base, "w", "api.sock")
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	listener := start(helperCommand("listen", sock))
	byArg := start(helperCommand("block", filepath.Join(base, "worker")))
	unrelated := start(exec.Command("sleep", "600"))
	// The listener has bound its socket when the socket file exists.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("helper did not listen")
		}
	}

	pids, err := killProcessesUsing(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []*exec.Cmd{listener, byArg} {
		if !slices.Contains(pids, want.Process.Pid) {
			t.Errorf("killed %v, want %d (%v) among them", pids, want.Process.Pid, want.Args)
		}
		if alive(want.Process.Pid) {
			t.Errorf("%v still runs", want.Args)
		}
	}
	if slices.Contains(pids, unrelated.Process.Pid) || !alive(unrelated.Process.Pid) {
		t.Errorf("an unrelated process was killed")
	}
	if slices.Contains(pids, os.Getpid()) {
		t.Errorf("killProcessesUsing would kill the test itself")
	}
}

func TestRemoveBaseDirRefusesMounted(t *testing.T) {
	RequireRoot(t)
	base := testBaseDir(t)
	mnt := filepath.Join(base, "m")
	mountTmpfs(t, mnt)
	if err := os.WriteFile(filepath.Join(mnt, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := removeBaseDir(base); err == nil {
		t.Fatal("removeBaseDir removed a dir with a mount below it")
	}
	if _, err := os.Stat(filepath.Join(mnt, "precious")); err != nil {
		t.Fatalf("a file in the mount is gone: %v", err)
	}
	if err := unmountUnder(base); err != nil {
		t.Fatal(err)
	}
	if err := removeBaseDir(base); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(base); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", base, err)
	}
}
