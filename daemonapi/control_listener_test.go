package daemonapi_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
)

func TestListenControl(t *testing.T) {
	ctx := testContext(t)
	t.Run("creates a private directory and socket", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "a", "b", "control.sock")
		l, err := daemonapi.ListenControl(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		assertMode(t, filepath.Dir(path), fs.ModeDir|0o700)
		assertMode(t, path, fs.ModeSocket|0o600)
	})
	t.Run("replaces a stale socket", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "control.sock")
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		l, err := daemonapi.ListenControl(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		if err := l.Close(); err != nil {
			t.Errorf("second Close() = %v", err)
		}
	})
	t.Run("leaves other files alone", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "control.sock")
		if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := daemonapi.ListenControl(ctx, path); !errdefs.IsAlreadyExists(err) {
			t.Errorf("ListenControl() over a file = %v, want already exists", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "data" {
			t.Error("the file was touched")
		}
	})
	t.Run("path too long", func(t *testing.T) {
		path := filepath.Join(shortDir(t), strings.Repeat("x", 120))
		if _, err := daemonapi.ListenControl(ctx, path); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ListenControl() = %v, want invalid argument", err)
		}
	})
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (fs.ModeType | fs.ModePerm); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}
