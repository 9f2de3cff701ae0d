package lazyfs

import (
	"os/exec"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/internal/testreq"
)

// groupMember starts a process running as uid 1001, gid 1, with the
// supplementary groups given, and returns its pid: the caller whose groups
// Access reads from /proc.
func groupMember(t *testing.T, groups ...uint32) uint32 {
	t.Helper()
	testreq.RequireRoot(t)
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1001, Gid: 1, Groups: groups}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return uint32(cmd.Process.Pid)
}

// TestAccessBySupplementaryGroup guards the supplementary group rule: a
// caller in the file's group only through its supplementary groups gets
// the group's bits ("private" is 0640, group 2000), another caller the
// other bits, and so does a caller whose pid the server cannot see (0).
func TestAccessBySupplementaryGroup(t *testing.T) {
	fs, tr := guardFS(t, fill)
	member, stranger := groupMember(t, 3000, 2000), groupMember(t, 3000)
	for _, tc := range []struct {
		name string
		pid  uint32
		mask uint32
		want fuse.Status
	}{
		{"member reads", member, unix.R_OK, fuse.OK},
		{"member executes", member, unix.X_OK, fuse.EACCES},
		{"stranger reads", stranger, unix.R_OK, fuse.EACCES},
		{"invisible caller reads", 0, unix.R_OK, fuse.EACCES},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caller := fuse.Caller{Owner: fuse.Owner{Uid: 1001, Gid: 1}, Pid: tc.pid}
			in := &fuse.AccessIn{InHeader: fuse.InHeader{NodeId: idOf(t, tr, "private"), Caller: caller}, Mask: tc.mask}
			if got := fs.Access(nil, in); got != tc.want {
				t.Fatalf("Access(private, mask %o, pid %d) = %v, want %v", tc.mask, tc.pid, got, tc.want)
			}
		})
	}
}
