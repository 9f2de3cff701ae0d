package mgmtapi

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTailOffset(t *testing.T) {
	var long strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&long, "line %04d %s\n", i, strings.Repeat("x", 89)) // 100 bytes a line
	}
	tests := []struct {
		name string
		data string
		n    int
		want string
	}{
		{"empty", "", 10, ""},
		{"none asked", "a\nb\n", 0, ""},
		{"fewer lines than asked", "a\nb\n", 10, "a\nb\n"},
		{"exactly as many", "a\nb\n", 2, "a\nb\n"},
		{"last lines", "a\nb\nc\n", 2, "b\nc\n"},
		{"last line unterminated", "a\nb\nc", 2, "b\nc"},
		{"only newlines", "\n\n\n", 2, "\n\n"},
		{"empty lines count", "a\n\nb\n", 2, "\nb\n"},
		{"across blocks", long.String(), 1500, long.String()[1500*100:]},
		{"block boundary", long.String(), 655, long.String()[(3000-655)*100:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := strings.NewReader(tc.data)
			off, err := tailOffset(r, int64(len(tc.data)), tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.data[off:]; got != tc.want {
				t.Errorf("tail = %.60q (%d bytes), want %.60q (%d bytes)", got, len(got), tc.want, len(tc.want))
			}
		})
	}
}

func writeLog(t *testing.T, logDir, id, data string) string {
	t.Helper()
	path := filepath.Join(logDir, "daemons", id+".log")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func appendLog(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

// TestLogFollow follows a log through appends, a rotation the way
// lumberjack does it (rename, then a new file), and a truncation.
func TestLogFollow(t *testing.T) {
	logDir := t.TempDir()
	path := writeLog(t, logDir, "w1", "l1\nl2\nl3\n")
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		t := &logTail{path: path, lines: 2, follow: true, interval: 5 * time.Millisecond, out: &out}
		done <- t.run(ctx, func() {})
	}()
	has := func(s string) func() bool { return func() bool { return strings.Contains(out.String(), s) } }

	waitFor(t, "the tail", has("l2\nl3\n"))
	appendLog(t, path, "l4\n")
	waitFor(t, "an appended line", has("l4\n"))

	// Written just before the rotation: must not be lost.
	appendLog(t, path, "l5\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendLog(t, path, "n1\n")
	waitFor(t, "the new file", has("n1\n"))
	appendLog(t, path, "n2\n")
	waitFor(t, "a line appended to the new file", has("n2\n"))

	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendLog(t, path, "t\n")
	waitFor(t, "the truncated file", has("n2\nt\n"))

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("follow ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end with its ctx")
	}
	if want := "l2\nl3\nl4\nl5\nn1\nn2\nt\n"; out.String() != want {
		t.Errorf("followed %q, want %q", out.String(), want)
	}
}
