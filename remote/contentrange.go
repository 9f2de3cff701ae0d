package remote

import (
	"fmt"
	"strconv"
	"strings"
)

// parseContentRange parses a single-range Content-Range value
// ("bytes first-last/total", RFC 9110 section 14.4). total is -1 when the
// server sent "*".
func parseContentRange(v string) (first, last, total int64, err error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, 0, fmt.Errorf("content-range %q: not a byte range", v)
	}
	// A value without "/" or "-" leaves a number empty, which does not
	// parse; and a is never negative: its "-" would be the separator.
	span, size, _ := strings.Cut(rest, "/")
	a, z, _ := strings.Cut(span, "-")
	if first, err = strconv.ParseInt(a, 10, 64); err != nil {
		return 0, 0, 0, fmt.Errorf("content-range %q: bad first byte", v)
	}
	if last, err = strconv.ParseInt(z, 10, 64); err != nil || last < first {
		return 0, 0, 0, fmt.Errorf("content-range %q: bad last byte", v)
	}
	total = -1
	if size != "*" {
		if total, err = strconv.ParseInt(size, 10, 64); err != nil || total <= last {
			return 0, 0, 0, fmt.Errorf("content-range %q: bad complete length", v)
		}
	}
	return first, last, total, nil
}
