// Command reader runs inside a container of a chaos image and checks the
// image's files against its manifest, over and over, until the stop file
// appears in its output dir: pread of blocks through descriptors it keeps
// open, open/read/close of whole files, lstat, and readdir. Each op reads
// data the kernel does not have cached (it drops the pages it read with
// POSIX_FADV_DONTNEED), so every read reaches the FUSE worker.
//
// It records every op (package chaos: OpsFile), every failure as it happens
// (ErrorsFile), its progress, and at the stop its stats. It never exits on
// a failed op: a failure is counted and the reader goes on.
//
// Built static (CGO_ENABLED=0) by the tests; it uses the standard library,
// x/sys and package chaos only.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/tests/chaos"
)

// maxLoggedErrors bounds ErrorsFile: past it, errors are only counted.
const maxLoggedErrors = 2000

func main() {
	manifestPath := flag.String("manifest", "/chaos/manifest.json", "manifest of the files to check")
	out := flag.String("out", "/out", "output dir (bind-mounted from the host)")
	goroutines := flag.Int("goroutines", 2, "concurrent op loops")
	pace := flag.Duration("pace", 2*time.Millisecond, "pause between two ops of one loop")
	flag.Parse()
	if err := run(*manifestPath, *out, *goroutines, *pace); err != nil {
		fmt.Fprintf(os.Stderr, "reader: %v\n", err)
		os.Exit(1)
	}
}

type reader struct {
	out      string
	manifest chaos.Manifest
	big      []chaos.FileSum // files with blocks
	small    []chaos.FileSum
	pace     time.Duration

	stopping atomic.Bool
	ops      [5]atomic.Int64 // by chaos.Op
	errs     atomic.Int64
	wrong    atomic.Int64
	stuck    atomic.Int64
	maxLat   atomic.Int64
	inFlight []atomic.Int64 // per loop: start (unix ns) of its op, 0 when idle
	flagged  []atomic.Int64 // per loop: start of the op reported stuck

	mu          sync.Mutex
	errFile     *os.File
	logged      int
	firstErrors []string
	firstWrong  []string
	opsLog      *bufio.Writer
	opsFile     *os.File
	opsLogErrs  int64
	rec         []byte
}

func run(manifestPath, out string, goroutines int, pace time.Duration) error {
	// A Go runtime crash (e.g. SIGBUS on a page of this binary) writes to
	// fd 2: keep it where the test reads it.
	se, err := os.OpenFile(filepath.Join(out, chaos.StderrFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if err := unix.Dup2(int(se.Fd()), 2); err != nil {
		return err
	}
	r := &reader{out: out, pace: pace,
		inFlight: make([]atomic.Int64, goroutines), flagged: make([]atomic.Int64, goroutines)}
	if r.errFile, err = os.OpenFile(filepath.Join(out, chaos.ErrorsFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
		return err
	}
	if r.opsFile, err = os.Create(filepath.Join(out, chaos.OpsFile)); err != nil {
		return err
	}
	r.opsLog = bufio.NewWriterSize(r.opsFile, 256<<10)
	b, err := os.ReadFile(manifestPath)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &r.manifest); err != nil {
		return fmt.Errorf("manifest %s: %w", manifestPath, err)
	}
	for _, f := range r.manifest.Files {
		if len(f.Blocks) > 0 {
			r.big = append(r.big, f)
		} else {
			r.small = append(r.small, f)
		}
	}
	if len(r.big) == 0 || len(r.small) == 0 || len(r.manifest.Dirs) == 0 {
		return fmt.Errorf("manifest %s lacks big files, small files or dirs", manifestPath)
	}

	started := time.Now()
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i := range goroutines {
		wg.Go(func() { r.loop(i) })
	}
	go func() { wg.Wait(); close(done) }()

	tick := time.NewTicker(chaos.ProgressInterval)
	defer tick.Stop()
	for range tick.C {
		r.watch()
		r.flushOps()
		if _, err := os.Stat(filepath.Join(out, chaos.StopFile)); err == nil {
			break
		}
	}
	r.stopping.Store(true)
	// A loop stuck in an op must not keep the stats from being written.
	select {
	case <-done:
	case <-time.After(2 * chaos.StuckAfter):
	}
	r.watch()
	var unfinished int64
	for i := range r.inFlight {
		if r.inFlight[i].Load() != 0 {
			unfinished++
		}
	}
	r.mu.Lock()
	if err := r.opsLog.Flush(); err != nil {
		r.opsLogErrs++
	}
	r.opsFile.Close()
	st := chaos.Stats{
		Started: started, Stopped: time.Now(), Ops: map[string]int64{},
		Errors: r.errs.Load(), Wrong: r.wrong.Load(), Stuck: r.stuck.Load(), Unfinished: unfinished,
		MaxLatency: time.Duration(r.maxLat.Load()), FirstErrors: r.firstErrors, FirstWrong: r.firstWrong, OpsLogErrors: r.opsLogErrs,
	}
	r.mu.Unlock()
	for _, op := range []chaos.Op{chaos.OpPread, chaos.OpRead, chaos.OpStat, chaos.OpReaddir} {
		st.Ops[op.String()] = r.ops[op].Load()
	}
	return chaos.WriteJSON(out, chaos.StatsFile, st)
}

// watch reports ops in flight for longer than chaos.StuckAfter (once each)
// and writes the progress file.
func (r *reader) watch() {
	now := time.Now().UnixNano()
	var oldest int64
	for i := range r.inFlight {
		start := r.inFlight[i].Load()
		if start == 0 {
			continue
		}
		oldest = max(oldest, now-start)
		if now-start > int64(chaos.StuckAfter) && r.flagged[i].Swap(start) != start {
			r.stuck.Add(1)
			r.logError(fmt.Sprintf("loop %d: op in flight for %v, started %s", i, time.Duration(now-start),
				time.Unix(0, start).Format(time.RFC3339Nano)), false)
		}
	}
	p := chaos.Progress{
		Ops: r.total(), Errors: r.errs.Load(), Wrong: r.wrong.Load(), Stuck: r.stuck.Load(),
		OldestInFlightMs: oldest / int64(time.Millisecond), Time: time.Now(),
	}
	if err := chaos.WriteJSON(r.out, chaos.ProgressFile, p); err != nil {
		fmt.Fprintf(os.Stderr, "reader: progress: %v\n", err)
	}
}

func (r *reader) total() int64 {
	var n int64
	for i := range r.ops {
		n += r.ops[i].Load()
	}
	return n
}

// loop runs ops until the reader stops. It keeps a descriptor of every big
// file open for its whole life: reads through a descriptor opened before a
// kill must go on after it.
func (r *reader) loop(i int) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
	fds := make([]*os.File, len(r.big))
	buf := make([]byte, 0, 1<<20)
	for !r.stopping.Load() {
		var op chaos.Op
		switch n := rng.IntN(100); {
		case n < 40:
			op = chaos.OpPread
		case n < 70:
			op = chaos.OpRead
		case n < 85:
			op = chaos.OpStat
		default:
			op = chaos.OpReaddir
		}
		start := time.Now()
		r.inFlight[i].Store(start.UnixNano())
		var res chaos.Result
		var what string
		switch op {
		case chaos.OpPread:
			j := rng.IntN(len(r.big))
			res, what = r.pread(&fds[j], r.big[j], rng.IntN(len(r.big[j].Blocks)), buf)
		case chaos.OpRead:
			res, what = r.read(r.small[rng.IntN(len(r.small))], buf)
		case chaos.OpStat:
			res, what = r.stat(r.manifest.Files[rng.IntN(len(r.manifest.Files))])
		case chaos.OpReaddir:
			res, what = r.readdir(r.manifest.Dirs[rng.IntN(len(r.manifest.Dirs))])
		}
		d := time.Since(start)
		r.inFlight[i].Store(0)
		r.ops[op].Add(1)
		for {
			m := r.maxLat.Load()
			if int64(d) <= m || r.maxLat.CompareAndSwap(m, int64(d)) {
				break
			}
		}
		switch res {
		case chaos.ResultError:
			r.errs.Add(1)
		case chaos.ResultWrong:
			r.wrong.Add(1)
		}
		if res != chaos.ResultOK {
			r.logError(fmt.Sprintf("%s %s", op, what), res == chaos.ResultWrong)
		}
		r.record(chaos.OpRecord{Start: start, Duration: d, Op: op, Result: res})
		if r.pace > 0 {
			time.Sleep(r.pace)
		}
	}
	for _, f := range fds {
		if f != nil {
			f.Close()
		}
	}
}

// flushOps writes the buffered op records out, so that a reader that dies
// leaves its ops up to the last tick.
func (r *reader) flushOps() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.opsLog.Flush(); err != nil {
		r.opsLogErrs++
	}
}

func (r *reader) record(rec chaos.OpRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec = chaos.AppendOpRecord(r.rec[:0], rec)
	if _, err := r.opsLog.Write(r.rec); err != nil {
		r.opsLogErrs++
	}
}

func (r *reader) logError(msg string, wrong bool) {
	line := time.Now().Format(time.RFC3339Nano) + " " + msg
	r.mu.Lock()
	defer r.mu.Unlock()
	if wrong && len(r.firstWrong) < 20 {
		r.firstWrong = append(r.firstWrong, line)
	} else if !wrong && len(r.firstErrors) < 20 {
		r.firstErrors = append(r.firstErrors, line)
	}
	if r.logged < maxLoggedErrors {
		r.logged++
		// Unbuffered: a reader that dies next still leaves the line.
		r.errFile.WriteString(line + "\n")
	}
}

func (r *reader) pread(fp **os.File, f chaos.FileSum, block int, buf []byte) (chaos.Result, string) {
	if *fp == nil {
		fd, err := os.Open(f.Path)
		if err != nil {
			return chaos.ResultError, err.Error()
		}
		*fp = fd
	}
	off := int64(block) * f.BlockSize
	n := min(f.BlockSize, f.Size-off)
	buf = buf[:n]
	fd := int((*fp).Fd())
	defer dropCache(fd, off, n)
	// A short read is no failure by itself (pages in the cache come back
	// first): read on until the block is complete, an error, or an
	// end of file the manifest does not know.
	for got := int64(0); got < n; {
		m, err := unix.Pread(fd, buf[got:], off+got)
		if err != nil {
			return chaos.ResultError, fmt.Sprintf("%s block %d at +%d: %v", f.Path, block, got, err)
		}
		if m == 0 {
			return chaos.ResultWrong, fmt.Sprintf("%s block %d: end of file after %d bytes, want %d", f.Path, block, off+got, f.Size)
		}
		got += int64(m)
	}
	if sum := sha256.Sum256(buf); hex.EncodeToString(sum[:]) != f.Blocks[block] {
		return chaos.ResultWrong, fmt.Sprintf("%s block %d: sha256 %x, want %s", f.Path, block, sum, f.Blocks[block])
	}
	return chaos.ResultOK, ""
}

func (r *reader) read(f chaos.FileSum, buf []byte) (chaos.Result, string) {
	fd, err := os.Open(f.Path)
	if err != nil {
		return chaos.ResultError, err.Error()
	}
	defer fd.Close()
	// The buffer is bigger than any small file: a short read is the end.
	n, err := io.ReadFull(fd, buf[:cap(buf)])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		dropCache(int(fd.Fd()), 0, 0)
		return chaos.ResultError, fmt.Sprintf("%s: %v", f.Path, err)
	}
	dropCache(int(fd.Fd()), 0, 0)
	if int64(n) != f.Size {
		return chaos.ResultWrong, fmt.Sprintf("%s: read %d bytes, want %d", f.Path, n, f.Size)
	}
	if sum := sha256.Sum256(buf[:n]); hex.EncodeToString(sum[:]) != f.SHA256 {
		return chaos.ResultWrong, fmt.Sprintf("%s: sha256 %x, want %s", f.Path, sum, f.SHA256)
	}
	return chaos.ResultOK, ""
}

func (r *reader) stat(f chaos.FileSum) (chaos.Result, string) {
	fi, err := os.Lstat(f.Path)
	if err != nil {
		return chaos.ResultError, err.Error()
	}
	if !fi.Mode().IsRegular() || fi.Size() != f.Size {
		return chaos.ResultWrong, fmt.Sprintf("%s: %v, %d bytes; want a regular file of %d", f.Path, fi.Mode(), fi.Size(), f.Size)
	}
	return chaos.ResultOK, ""
}

func (r *reader) readdir(d chaos.DirList) (chaos.Result, string) {
	fd, err := os.Open(d.Path)
	if err != nil {
		return chaos.ResultError, err.Error()
	}
	defer fd.Close()
	names, err := fd.Readdirnames(-1)
	if err != nil {
		return chaos.ResultError, fmt.Sprintf("%s: %v", d.Path, err)
	}
	slices.Sort(names)
	if !slices.Equal(names, d.Entries) {
		return chaos.ResultWrong, fmt.Sprintf("%s: entries %s, want %s", d.Path, brief(names), brief(d.Entries))
	}
	return chaos.ResultOK, ""
}

func brief(names []string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d [", len(names))
	for i, n := range names {
		if i == 5 {
			b.WriteString(" …")
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(path.Base(n))
	}
	b.WriteByte(']')
	return b.String()
}

// dropCache evicts the file's pages from the page cache (through overlayfs
// to the FUSE file below), so that the next read of them reaches the worker.
func dropCache(fd int, off, n int64) {
	_ = unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
}
