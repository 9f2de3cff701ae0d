package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
)

// notifySocket stands in for systemd's notify socket: it returns each
// datagram the snapshotter sends.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

func next(t *testing.T, msgs <-chan string) string {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no notification within 5s")
		return ""
	}
}

func TestWatchSystemd(t *testing.T) {
	for _, tc := range []struct {
		name     string
		watchdog string // WATCHDOG_USEC
		want     []string
	}{
		{"with WatchdogSec", "100000", []string{"WATCHDOG=1\nSTATUS=status 1", "WATCHDOG=1\nSTATUS=status 2", "WATCHDOG=1\nSTATUS=status 3"}},
		{"without", "", []string{"STATUS=status 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := notifySocket(t)
			t.Setenv("WATCHDOG_USEC", tc.watchdog)
			t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
			n := 0
			stop := watchSystemd(logtest.WithT(t.Context(), t), func() string {
				n++
				return "status " + strconv.Itoa(n)
			})
			for _, want := range tc.want {
				if got := next(t, msgs); got != want {
					t.Errorf("notification %q, want %q", got, want)
				}
			}
			stop()
		})
	}
}

// Outside systemd nothing is sent and nothing fails.
func TestWatchSystemdOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	called := false
	stop := watchSystemd(logtest.WithT(t.Context(), t), func() string { called = true; return "" })
	stop()
	if called {
		t.Error("status read outside systemd")
	}
}

func TestNotifyStates(t *testing.T) {
	msgs := notifySocket(t)
	ctx := logtest.WithT(t.Context(), t)
	notify(ctx, "READY=1\nSTATUS=serving")
	notify(ctx, "STOPPING=1")
	for _, want := range []string{"READY=1\nSTATUS=serving", "STOPPING=1"} {
		if got := next(t, msgs); !strings.EqualFold(got, want) {
			t.Errorf("notification %q, want %q", got, want)
		}
	}
}
