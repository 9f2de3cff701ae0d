package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const (
	registryReadyTimeout = 15 * time.Second
	registryStopTimeout  = 10 * time.Second
	// registryStartAttempts covers the race between picking a free port and
	// the registry binding it: another process may take it in between.
	registryStartAttempts = 3
)

// registryConfig is docker-registry's YAML config. Redirects are disabled so
// that every blob byte is served by the registry itself (the filesystem
// driver has none anyway; the setting documents the expectation).
const registryConfig = `version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  redirect:
    disable: true
http:
  addr: %s
`

// Registry is a running Debian docker-registry serving plain HTTP on a
// loopback port.
type Registry struct {
	dir  string
	addr string
	proc *process
}

// StartRegistry runs `docker-registry serve` on a free 127.0.0.1 port with its
// config, storage (dir/data) and log (dir/registry.log) in dir, and waits
// until /v2/ answers.
func StartRegistry(ctx context.Context, dir string) (*Registry, error) {
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("failed to create registry storage: %w", err)
	}
	var lastErr error
	for range registryStartAttempts {
		r, err := startRegistryOnce(ctx, dir)
		if err == nil {
			return r, nil
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	return nil, lastErr
}

var errPortTaken = errors.New("port taken")

func startRegistryOnce(ctx context.Context, dir string) (*Registry, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(registryConfig, filepath.Join(dir, "data"), addr)), 0o644); err != nil {
		return nil, fmt.Errorf("failed to write registry config: %w", err)
	}
	logPath := filepath.Join(dir, "registry.log")
	proc, err := startProcess("docker-registry", logPath, exec.Command("docker-registry", "serve", cfg))
	if err != nil {
		return nil, err
	}
	r := &Registry{dir: dir, addr: addr, proc: proc}
	if err := r.waitReady(ctx); err != nil {
		proc.kill()
		if strings.Contains(logTail(logPath), "address already in use") {
			return nil, fmt.Errorf("registry on %s: %w", addr, errPortTaken)
		}
		return nil, err
	}
	return r, nil
}

// freeLoopbackAddr asks the kernel for a free port: fixed ports may be used
// by whatever else runs on the machine.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("failed to find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (r *Registry) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, registryReadyTimeout)
	defer cancel()
	url := "http://" + r.addr + "/v2/"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("failed to build request: %w", err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if r.proc.exited() {
			return r.proc.exitError()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("registry on %s not ready: %w\n%s", r.addr, ctx.Err(), logTail(r.proc.logPath))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Addr is the registry's host:port, e.g. for "ADDR/lazyfs/test:v1".
func (r *Registry) Addr() string { return r.addr }

// Dir is the directory holding the registry's config, storage and log.
func (r *Registry) Dir() string { return r.dir }

// Stop stops the registry (SIGTERM, then SIGKILL after a deadline).
func (r *Registry) Stop() error {
	if _, inTime := r.proc.stop(registryStopTimeout); !inTime {
		return fmt.Errorf("registry on %s did not stop within %v: killed", r.addr, registryStopTimeout)
	}
	return nil
}

// Logs returns the registry's log file.
func (r *Registry) Logs() []string { return []string{r.proc.logPath} }

func (r *Registry) shutdown() error { return r.Stop() }

// Close stops the registry. Its directory belongs to the caller and stays.
func (r *Registry) Close() error { return r.shutdown() }
