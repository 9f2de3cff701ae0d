package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Scripts of long-running reader containers. Each writes one line per step
// to /out/progress, a file in a bind mount the test reads: "ok <n>" after a
// step that read and checked its data, "FAIL <n> <what>" when a step failed
// (the script then exits), "END" when it ran out of work. Every step reads
// data that no earlier step read, so that it reaches the worker instead of
// the kernel's page cache.
//
// They run on a copy of busybox in the container's writable layer,
// /tmp/busybox, and call every applet through it: when a worker dies, a busybox running
// from the image would die too (SIGBUS) as soon as it touches a page of its
// own binary not yet in memory, e.g. to print the error, and the test would
// learn nothing about the read that failed.
const (
	// readErrFunc prints /out/err on one line.
	readErrFunc = `read_err() { while read -r l; do printf '%s ' "$l"; done </out/err; }
`
	// verifyManyScript checks one file of /data/many per step against the
	// image's checksum list, 50 ms apart: 2000 files, about two minutes.
	verifyManyScript = readErrFunc + `i=0
while [ $i -lt 2000 ]; do
  f=$(printf '/data/many/file-%04d' $i)
  line=$(/tmp/busybox grep -F "  $f" /checksums.sha256)
  if [ -z "$line" ] || ! echo "$line" | /tmp/busybox sha256sum -c -s - 2>/out/err; then
    echo "FAIL $i $f: $(read_err)" >> /out/progress; exit 1
  fi
  echo "ok $i" >> /out/progress
  i=$((i+1)); /tmp/busybox sleep 0.05
done
echo END >> /out/progress`

	// slowReadScript reads the 8 MiB random file 16 KiB per step, 50 ms
	// apart (512 steps, about half a minute), through one descriptor opened
	// at the start: a read that fails is a read on an open file, not an
	// open. Each dd reads on from the offset the last one left.
	slowReadScript = readErrFunc + `exec 3</data/size/random-8m || exit 1
i=0
while [ $i -lt 512 ]; do
  /tmp/busybox dd of=/dev/null bs=16384 count=1 <&3 2>/out/err; rc=$?
  if [ $rc -ne 0 ]; then
    echo "FAIL $i: exit $rc: $(read_err)" >> /out/progress; exit 1
  fi
  echo "ok $i" >> /out/progress
  i=$((i+1)); /tmp/busybox sleep 0.05
done
echo END >> /out/progress`
)

// reader is a detached container running one of the scripts above.
type reader struct {
	id  string
	dir string // host dir mounted at /out
}

// startReader runs script detached in a container of ref, with a host dir
// bind-mounted at /out, by a busybox copied out of the image.
func (s *stack) startReader(t *testing.T, ref, id, script string) *reader {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "script.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ctrd.CtrRun(context.Background(), "--snapshotter", "lazyfs", "--detach",
		"--mount", "type=bind,src="+dir+",dst=/out,options=rbind:rw",
		ref, id, "sh", "-c", "exec 2>/out/stderr; cp /bin/busybox /tmp/busybox && exec /tmp/busybox sh /out/script.sh"); err != nil {
		t.Fatal(err)
	}
	return &reader{id: id, dir: dir}
}

// stderr returns what the container wrote to its standard error.
func (r *reader) stderr() string {
	b, err := os.ReadFile(filepath.Join(r.dir, "stderr"))
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(b))
}

// state returns the number of steps that succeeded, the failure line (""
// while none), and whether the script ran to its end.
func (r *reader) state(t *testing.T) (ok int, fail string, end bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, "progress"))
	if os.IsNotExist(err) {
		return 0, "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "ok "):
			ok++
		case strings.HasPrefix(line, "FAIL ") && fail == "":
			fail = line
		case line == "END":
			end = true
		}
	}
	return ok, fail, end
}
