// Package chaos is what the failover chaos test, its benchmark and the
// reader program they run in containers share: the manifest of expected
// file contents an image carries, the files the reader writes to its output
// dir (progress, errors, per-op log, final stats), and the analysis of op
// latencies around worker kills.
//
// It uses the standard library only: the reader is built from it as a small
// static binary (CGO_ENABLED=0) that the test puts into an image layer.
package chaos

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Files of the reader's output dir (a host dir bind-mounted into the
// container): the test creates StopFile; the reader writes the others.
const (
	// StopFile asks the reader to stop, write StatsFile and exit 0.
	StopFile = "stop"
	// ProgressFile is rewritten (atomically) every ProgressInterval.
	ProgressFile = "progress.json"
	// StatsFile is written once, at the end.
	StatsFile = "stats.json"
	// ErrorsFile gets one line per failed op as it happens, so that a
	// reader that dies still tells what it saw.
	ErrorsFile = "errors.log"
	// OpsFile is the per-op log: one OpRecord per op, in the order ops end.
	OpsFile = "ops.bin"
	// StderrFile is where the reader puts its own stderr (a Go runtime
	// crash, e.g. SIGBUS on a page of its binary, lands there).
	StderrFile = "stderr"
)

// ProgressInterval is how often the reader rewrites ProgressFile.
const ProgressInterval = 50 * time.Millisecond

// StuckAfter is how long an op may be in flight before the reader reports
// it as stuck.
const StuckAfter = 5 * time.Second

// Manifest lists what a chaos image holds and what the reader checks.
type Manifest struct {
	Files []FileSum `json:"files"`
	Dirs  []DirList `json:"dirs"`
}

// FileSum is a regular file: its size and sha256 (hex), and for a file read
// with pread, the sha256 of each BlockSize block (the last may be short).
type FileSum struct {
	Path      string   `json:"path"`
	Size      int64    `json:"size"`
	SHA256    string   `json:"sha256"`
	BlockSize int64    `json:"block_size,omitempty"`
	Blocks    []string `json:"blocks,omitempty"`
}

// DirList is a directory and its entries' names, sorted.
type DirList struct {
	Path    string   `json:"path"`
	Entries []string `json:"entries"`
}

// Op is the kind of one reader op.
type Op uint8

// Ops the reader runs.
const (
	OpPread   Op = iota + 1 // pread of one block through a descriptor kept open
	OpRead                  // open, read the whole file, close
	OpStat                  // lstat
	OpReaddir               // open, getdents, close
)

func (o Op) String() string {
	switch o {
	case OpPread:
		return "pread"
	case OpRead:
		return "read"
	case OpStat:
		return "stat"
	case OpReaddir:
		return "readdir"
	}
	return fmt.Sprintf("op%d", uint8(o))
}

// Result is how an op ended.
type Result uint8

// Results of an op.
const (
	ResultOK    Result = iota
	ResultError        // a syscall failed
	ResultWrong        // the data or metadata differ from the manifest
)

// OpRecord is one op of the per-op log.
type OpRecord struct {
	Start    time.Time
	Duration time.Duration
	Op       Op
	Result   Result
}

// End is when the op returned.
func (r OpRecord) End() time.Time { return r.Start.Add(r.Duration) }

// opRecordSize is the encoded size: start (unix ns, int64), duration (µs,
// uint32), op, result, two bytes of padding; little endian.
const opRecordSize = 16

// AppendOpRecord appends r's encoding to b.
func AppendOpRecord(b []byte, r OpRecord) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Start.UnixNano()))
	us := r.Duration.Microseconds()
	if us > 1<<32-1 {
		us = 1<<32 - 1
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(us))
	return append(b, byte(r.Op), byte(r.Result), 0, 0)
}

// ReadOpRecords decodes an OpsFile. A truncated last record (a reader that
// died while writing) is ignored.
func ReadOpRecords(path string) ([]OpRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var out []OpRecord
	buf := make([]byte, opRecordSize)
	for {
		if _, err := io.ReadFull(br, buf); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return out, nil
			}
			return out, fmt.Errorf("failed to read %s: %w", path, err)
		}
		out = append(out, OpRecord{
			Start:    time.Unix(0, int64(binary.LittleEndian.Uint64(buf))),
			Duration: time.Duration(binary.LittleEndian.Uint32(buf[8:])) * time.Microsecond,
			Op:       Op(buf[12]),
			Result:   Result(buf[13]),
		})
	}
}

// Progress is the content of ProgressFile.
type Progress struct {
	Ops    int64 `json:"ops"`
	Errors int64 `json:"errors"`
	Wrong  int64 `json:"wrong"`
	Stuck  int64 `json:"stuck"`
	// OldestInFlightMs is how long the oldest op in flight has run.
	OldestInFlightMs int64     `json:"oldest_in_flight_ms"`
	Time             time.Time `json:"time"`
}

// Stats is the content of StatsFile.
type Stats struct {
	Started time.Time        `json:"started"`
	Stopped time.Time        `json:"stopped"`
	Ops     map[string]int64 `json:"ops"`
	Errors  int64            `json:"errors"`
	Wrong   int64            `json:"wrong"`
	// Stuck counts ops that were in flight longer than StuckAfter.
	Stuck int64 `json:"stuck"`
	// Unfinished counts goroutines still in an op when the reader gave up
	// waiting for them at the stop.
	Unfinished int64         `json:"unfinished"`
	MaxLatency time.Duration `json:"max_latency_ns"`
	// FirstErrors are the first failed ops (and stuck ones); FirstWrong
	// the first ops that read wrong data.
	FirstErrors  []string `json:"first_errors"`
	FirstWrong   []string `json:"first_wrong"`
	OpsLogErrors int64    `json:"ops_log_errors"`
}

// TotalOps sums Ops.
func (s Stats) TotalOps() int64 {
	var n int64
	for _, v := range s.Ops {
		n += v
	}
	return n
}

// ReadJSON decodes the JSON file dir/name into v.
func ReadJSON(dir, name string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("failed to decode %s: %w", filepath.Join(dir, name), err)
	}
	return nil
}

// WriteJSON writes v to dir/name through a temporary file and a rename, so
// that a reader of the file never sees half of it.
func WriteJSON(dir, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}
