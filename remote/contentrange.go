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
	span, size, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, fmt.Errorf("content-range %q: no complete length", v)
	}
	a, z, ok := strings.Cut(span, "-")
	if !ok {
		return 0, 0, 0, fmt.Errorf("content-range %q: no range", v)
	}
	if first, err = strconv.ParseInt(a, 10, 64); err != nil || first < 0 {
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
