package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	"golang.org/x/sys/unix"
)

// helperEnv selects what this test binary does when the harness tests run
// it as a child process (the os/exec TestHelperProcess pattern).
const helperEnv = "LAZYFS_HARNESS_HELPER"

// TestHelperProcess is not a test: it is the body of the child processes
// the tests below start, selected by $LAZYFS_HARNESS_HELPER.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	if err := runHelper(mode, args); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helperCommand returns a command running this test binary as a helper.
func helperCommand(mode string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestHelperProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	return cmd
}

func runHelper(mode string, args []string) error {
	switch mode {
	case "exit-on-term":
		// Exits with the code in args[0] on SIGTERM.
		code, _ := strconv.Atoi(args[0])
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
		os.Exit(code)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		select {}
	case "block":
		// Runs until killed; its arguments only show in its command line.
		select {}
	case "listen":
		// Listens on the unix socket args[0] until killed.
		l, err := net.Listen("unix", args[0])
		if err != nil {
			return err
		}
		defer l.Close()
		select {}
	case "fake-snapshotter":
		return runFakeSnapshotter(args)
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// waitForLog waits until the log file at path contains s.
func waitForLog(t *testing.T, path, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not say %q after 10s:\n%s", path, s, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runFakeSnapshotter stands in for lazyfs-snapshotter: it reads the
// generated config, leaves behind what the real one may leave (a worker in
// its own session holding a socket under run_dir, a mount under root), serves
// the gRPC address and exits on SIGTERM with $FAKE_EXIT_CODE, or ignores
// SIGTERM when $FAKE_IGNORE_TERM is set.
func runFakeSnapshotter(args []string) error {
	if len(args) < 2 || args[0] != "--config" {
		return fmt.Errorf("want --config FILE, got %q", args)
	}
	if os.Getenv("FAKE_FAIL") != "" {
		return fmt.Errorf("fake start-up failure: %s", os.Getenv("FAKE_FAIL"))
	}
	b, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	var cfg struct {
		Root    string `toml:"root"`
		Address string `toml:"address"`
		RunDir  string `toml:"run_dir"`
		LogDir  string `toml:"log_dir"`
	}
	if err := toml.Unmarshal(b, &cfg); err != nil {
		return err
	}
	terminated := make(chan os.Signal, 1)
	if os.Getenv("FAKE_IGNORE_TERM") != "" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(terminated, syscall.SIGTERM)
	}

	workerDir := filepath.Join(cfg.RunDir, "workers", "w1")
	mnt := filepath.Join(cfg.Root, "snapshots", "1", "fs")
	for _, d := range []string{workerDir, mnt, cfg.LogDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(cfg.LogDir, "w1.log"), []byte("worker w1 log\n"), 0o644); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil && !isMounted(mnt) {
		return err
	}
	worker := helperCommand("listen", filepath.Join(workerDir, "api.sock"))
	worker.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := worker.Start(); err != nil {
		return err
	}
	// A killed run leaves its socket file behind.
	_ = os.Remove(cfg.Address)
	l, err := net.Listen("unix", cfg.Address)
	if err != nil {
		return err
	}
	fmt.Println("fake snapshotter serving", cfg.Address, "worker", worker.Process.Pid)
	<-terminated
	code, _ := strconv.Atoi(os.Getenv("FAKE_EXIT_CODE"))
	l.Close()
	os.Exit(code)
	return nil
}

func isMounted(dir string) bool {
	mps, err := mountsUnder(dir)
	return err == nil && len(mps) > 0
}

func TestProcessStop(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cmd        *exec.Cmd
		wantCode   int
		wantInTime bool
	}{
		{name: "exits 0 on SIGTERM", cmd: helperCommand("exit-on-term", "0"), wantCode: 0, wantInTime: true},
		{name: "exits 3 on SIGTERM", cmd: helperCommand("exit-on-term", "3"), wantCode: 3, wantInTime: true},
		{name: "ignores SIGTERM", cmd: helperCommand("ignore-term"), wantCode: -1, wantInTime: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "log")
			p, err := startProcess("helper", logPath, tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.kill)
			waitForLog(t, logPath, "ready") // signal handlers installed
			code, inTime := p.stop(time.Second)
			if code != tc.wantCode || inTime != tc.wantInTime {
				t.Errorf("stop() = %d, %v; want %d, %v", code, inTime, tc.wantCode, tc.wantInTime)
			}
			if !p.exited() {
				t.Error("process still runs after stop")
			}
			if code, inTime := p.stop(time.Second); code != tc.wantCode || !inTime {
				t.Errorf("second stop() = %d, %v; want %d, true", code, inTime, tc.wantCode)
			}
		})
	}
}

func TestProcessExitErrorCarriesLog(t *testing.T) {
	cmd := exec.Command("sh", "-c", "echo something went wrong >&2; exit 7")
	p, err := startProcess("failing", filepath.Join(t.TempDir(), "log"), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if !p.wait(10 * time.Second) {
		t.Fatal("process did not exit")
	}
	if p.exitCode() != 7 {
		t.Errorf("exitCode() = %d, want 7", p.exitCode())
	}
	if msg := p.exitError().Error(); !strings.Contains(msg, "something went wrong") || !strings.Contains(msg, "exit status 7") {
		t.Errorf("exitError() = %q, want the status and the log", msg)
	}
}

func TestLogTailKeepsTheEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	content := strings.Repeat("x", logTailBytes) + "THE END\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got := logTail(path)
	if !strings.HasSuffix(got, "THE END\n") || !strings.Contains(got, "first 8 bytes left out") {
		t.Errorf("logTail() = %q..., want the last %d bytes after a note", got[:80], logTailBytes)
	}
	if short := logTail(filepath.Join(t.TempDir(), "absent")); !strings.Contains(short, "cannot read") {
		t.Errorf("logTail(absent) = %q", short)
	}
}
