package supervisor

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStat reads the state (field 3) and the start time in clock ticks since
// boot (field 22) of /proc/<pid>/stat. With the pid, the start time
// identifies a process across pid reuse.
func procStat(pid int) (state string, start uint64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after its closing parenthesis.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	// Fields after the name are numbered from 3 in proc(5): field N is at
	// index N-3.
	const stateField, startTimeField = 0, 22 - 3
	if len(fields) <= startTimeField {
		return "", 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(fields[startTimeField], 10, 64)
	return fields[stateField], start, err
}

// processStartTime returns the start time of pid (see procStat).
func processStartTime(pid int) (uint64, error) {
	_, start, err := procStat(pid)
	return start, err
}

// sameProcess reports whether pid is still the running process that started
// at start. A zombie is not running: a worker whose snapshotter died is
// reaped by init, which may take a while.
func sameProcess(pid int, start uint64) bool {
	state, got, err := procStat(pid)
	return err == nil && got == start && state != "Z"
}
