package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// initKillWrapper is the worker binary of TestFailoverWorkerKilledAnsweringInit
// (config workers.binary). Its first run has strace attach to it before it
// execs lazyfsd — same pid, so the supervisor's pid checks hold — and
// strace SIGKILLs lazyfsd at its first write to /dev/fuse, which is the
// reply to FUSE INIT, after it read the INIT request; the write itself is
// replaced by an error, so the kernel never gets the reply. Every later run
// (the successor) execs lazyfsd as it is.
const initKillWrapper = `#!/bin/sh
dir=%[1]q
if mkdir "$dir/first-run" 2>/dev/null; then
	echo $$ > "$dir/first-pid"
	pid=$$
	(strace -f -q -y -o "$dir/trace" -P /dev/fuse -e trace=read,write,writev \
		-e inject=write,writev:error=EIO:signal=SIGKILL:when=1 -p $pid \
		</dev/null >/dev/null 2>"$dir/strace.err"; echo $? >"$dir/strace-rc"; mv "$dir/strace-rc" "$dir/strace-done") &
	# Bounded: 10 s for strace to attach.
	i=0
	until grep -q '^TracerPid:[[:space:]]*[1-9]' /proc/$$/status; do
		i=$((i+1)); [ $i -gt 1000 ] && { echo "strace did not attach" >&2; exit 1; }
		sleep 0.01
	done
fi
exec %[2]q "$@"
`

// TestFailoverWorkerKilledAnsweringInit kills the worker of a fresh lazy
// mount at the moment it has read FUSE INIT and is writing its reply, while
// the snapshotter waits for that reply in Prepare: the mount must work
// afterwards (issue 9: the successor gets INIT back through
// FUSE_NOTIFY_RESEND and answers it). The pull succeeds with every layer
// mounted lazily, the worker id is served by another process, and a
// container verifies every file of the image.
func TestFailoverWorkerKilledAnsweringInit(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Fatalf("strace is needed to kill the worker at FUSE INIT (run scripts/install-deps.sh): %v", err)
	}
	if err := env.CheckBinaries("lazyfsd"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "lazyfsd-init-kill")
	script := fmt.Sprintf(initKillWrapper, dir, env.Bin("lazyfsd"))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := startStackWith(t, harness.V2, harness.SnapshotterOptions{
		Env:    env,
		Config: map[string]any{"workers": map[string]any{"binary": wrapper}},
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"trace", "strace.err", "strace-done", "first-pid"} {
				t.Logf("==== %s ====\n%s", f, fileHead(filepath.Join(dir, f), 80))
			}
		}
	})
	img := s.convertToEStargz(t, "")
	s.pullRef(t, img.ref, "lazyfs")

	// The kill happened where it should: the first worker read INIT on
	// /dev/fuse, its first write there was replaced and it was killed.
	// strace writes its trace out when it ends.
	waitFor(t, 20*time.Second, "strace of the first worker ends", func() (bool, string) {
		_, err := os.Stat(filepath.Join(dir, "strace-done"))
		return err == nil, fmt.Sprint(err)
	})
	trace, err := os.ReadFile(filepath.Join(dir, "trace"))
	if err != nil {
		t.Fatalf("no strace output: the first worker was not traced: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "first-pid"))
	firstPID := strings.TrimSpace(string(b))
	checkInitKillTrace(t, string(trace), firstPID)

	s.checkRemoteLabels(t, img)
	mounts := fuseMounts(t, s.snap)
	if len(mounts) != len(img.layers) {
		t.Errorf("FUSE mounts after the pull: %v, want one per layer (%d)", mounts, len(img.layers))
	}
	for mp, n := range mounts {
		if n != 1 {
			t.Errorf("%d FUSE mounts stacked at %s, want 1", n, mp)
		}
	}
	w := onlyWorker(t, s.snap)
	if fmt.Sprint(w.PID) == firstPID || servingMounts(w) != len(img.layers) {
		t.Errorf("worker %s pid %d serves %d mounts; want a successor of pid %s serving %d", w.ID, w.PID, servingMounts(w), firstPID, len(img.layers))
	}
	s.runQuickChecks(t, img.ref, "after-init-kill")
}

// checkInitKillTrace asserts that strace's trace of the first worker (pid)
// shows a read of FUSE INIT on /dev/fuse (opcode 26 in the request's bytes
// 4–7), then the injected write, then the SIGKILL.
func checkInitKillTrace(t *testing.T, trace, pid string) {
	t.Helper()
	// strace prints bytes as octal escapes: INIT is opcode 26, "\32".
	read := regexp.MustCompile(`read\(\d+</dev/fuse>, "[^"]*?\\32\\0\\0\\0`).FindStringIndex(trace)
	// The injected SIGKILL ends the process inside its first write there
	// (strace may print it split: "<unfinished ...>", "<... write
	// resumed>) = ?"); no write to /dev/fuse may have returned.
	injected := regexp.MustCompile(`write[v]?\(\d+</dev/fuse>`).FindStringIndex(trace)
	if done := regexp.MustCompile(`write[v]?\(\d+</dev/fuse>.*\) += \d+`).FindString(trace); done != "" {
		t.Fatalf("the first worker (pid %s) wrote to /dev/fuse before it was killed: %s\n%s", pid, done, trace)
	}
	killed := strings.Index(trace, "+++ killed by SIGKILL +++")
	if read == nil || injected == nil || killed < 0 || read[0] > injected[0] || injected[0] > killed {
		t.Fatalf("the first worker (pid %s) was not killed answering INIT; strace saw:\n%s", pid, trace)
	}
}
