package remote

import "testing"

// TestParseContentRange guards every part of a Content-Range value: each
// malformed one is refused (a range read would otherwise take bytes of
// the wrong place for the right ones).
func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in                 string
		first, last, total int64
		wantErr            bool
	}{
		{in: "bytes 0-0/10", first: 0, last: 0, total: 10},
		{in: "bytes 5-9/10", first: 5, last: 9, total: 10},
		{in: "bytes 5-9/*", first: 5, last: 9, total: -1},
		{in: "bytes 5-9/9", wantErr: true},
		{in: "bytes 9-5/10", wantErr: true},
		{in: "bytes -1-5/10", wantErr: true},
		{in: "bytes 5-9", wantErr: true},
		{in: "bytes */10", wantErr: true},
		{in: "items 0-1/2", wantErr: true},
		{in: "0-1/2", wantErr: true},
		{in: "bytes x-9/10", wantErr: true},
		{in: "bytes 0-x/10", wantErr: true},
		{in: "bytes 0-9/x", wantErr: true},
		{in: "bytes 5/10", wantErr: true},
		{in: "bytes 5-/10", wantErr: true},
		{in: "bytes -5/10", wantErr: true},
		{in: "bytes 5--3/10", wantErr: true},
		{in: "", wantErr: true},
	} {
		first, last, total, err := parseContentRange(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("parseContentRange(%q) accepted", tc.in)
			}
			continue
		}
		if err != nil || first != tc.first || last != tc.last || total != tc.total {
			t.Errorf("parseContentRange(%q) = %d, %d, %d, %v", tc.in, first, last, total, err)
		}
	}
}
