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
const (
	// verifyManyScript checks one file of /data/many per step against the
	// image's checksum list, 50 ms apart: 2000 files, about two minutes.
	verifyManyScript = `i=0
while [ $i -lt 2000 ]; do
  f=$(printf '/data/many/file-%04d' $i)
  line=$(grep -F "  $f" /checksums.sha256)
  if [ -z "$line" ] || ! echo "$line" | sha256sum -c -s - 2>/out/err; then
    echo "FAIL $i $f: $(cat /out/err)" >> /out/progress; exit 1
  fi
  echo "ok $i" >> /out/progress
  i=$((i+1)); sleep 0.05
done
echo END >> /out/progress`

	// slowReadScript reads the 8 MiB random file 16 KiB per step, 50 ms
	// apart: 512 steps, about half a minute.
	slowReadScript = `i=0
while [ $i -lt 512 ]; do
  if ! dd if=/data/size/random-8m of=/dev/null bs=16384 skip=$i count=1 2>/out/err; then
    echo "FAIL $i $(cat /out/err)" >> /out/progress; exit 1
  fi
  echo "ok $i" >> /out/progress
  i=$((i+1)); sleep 0.05
done
echo END >> /out/progress`
)

// reader is a detached container running one of the scripts above.
type reader struct {
	id       string
	progress string // host path of /out/progress
}

// startReader runs script detached in a container of ref with a host dir
// bind-mounted at /out.
func (s *stack) startReader(t *testing.T, ref, id, script string) *reader {
	t.Helper()
	dir := t.TempDir()
	if _, err := s.ctrd.CtrRun(context.Background(), "--snapshotter", "lazyfs", "--detach",
		"--mount", "type=bind,src="+dir+",dst=/out,options=rbind:rw",
		ref, id, "sh", "-c", script); err != nil {
		t.Fatal(err)
	}
	return &reader{id: id, progress: filepath.Join(dir, "progress")}
}

// state returns the number of steps that succeeded, the failure line (""
// while none), and whether the script ran to its end.
func (r *reader) state(t *testing.T) (ok int, fail string, end bool) {
	t.Helper()
	b, err := os.ReadFile(r.progress)
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
