package supervisor

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// processStartTime returns field 22 of /proc/<pid>/stat (start time in clock
// ticks since boot). With the pid it identifies a process across pid reuse.
func processStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after its closing parenthesis.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	const startTimeField = 22 - 3 // fields 3.. follow the name
	if len(fields) <= startTimeField {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[startTimeField], 10, 64)
}

// sameProcess reports whether pid is still the process that started at start.
func sameProcess(pid int, start uint64) bool {
	got, err := processStartTime(pid)
	return err == nil && got == start
}
