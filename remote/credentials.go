package remote

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// helperTimeout bounds one call of a docker-credential-<name> helper.
const helperTimeout = 10 * time.Second

// DockerConfigPath returns the docker config.json to read: configured if
// set, else $DOCKER_CONFIG/config.json, else ~/.docker/config.json (HOME,
// or /root for a root process without HOME), as docker itself looks.
func DockerConfigPath(configured string) string {
	if configured != "" {
		return configured
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	home := os.Getenv("HOME")
	if home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".docker", "config.json")
}

// DockerCredentials answers registry credentials from a docker config.json:
// "auths" (auth = base64 "user:password", or username/password, or an
// identitytoken), "credHelpers" (per registry) and "credsStore" (the
// default helper), helpers run as docker-credential-<name>. The file is
// read again when it changes (its size, mtime or inode), so credentials
// rotated on a running node reach running workers; a missing file means
// anonymous access. It is safe for concurrent use.
type DockerCredentials struct {
	path string

	mu     sync.Mutex
	loaded bool
	stamp  fileStamp
	cfg    dockerConfig
	err    error
}

type dockerConfig struct {
	Auths       map[string]dockerAuth `json:"auths"`
	CredHelpers map[string]string     `json:"credHelpers"`
	CredsStore  string                `json:"credsStore"`
}

type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

type fileStamp struct {
	exists bool
	size   int64
	mtime  time.Time
	ino    uint64
}

// NewDockerCredentials reads credentials from the config.json at path
// (see DockerConfigPath).
func NewDockerCredentials(path string) *DockerCredentials {
	return &DockerCredentials{path: path}
}

// Path is the file the credentials come from.
func (d *DockerCredentials) Path() string { return d.path }

// Credentials returns the username and secret for host ("" and "" for
// anonymous access). An identity token comes back with an empty username,
// which containerd's authorizer sends as an OAuth refresh token.
func (d *DockerCredentials) Credentials(host string) (string, string, error) {
	cfg, err := d.load()
	if err != nil {
		return "", "", err
	}
	if helper, ok := cfg.CredHelpers[host]; ok && helper != "" {
		return runHelper(helper, host)
	}
	if a, ok := lookupAuth(cfg.Auths, host); ok {
		return a.credentials(host)
	}
	if cfg.CredsStore != "" {
		return runHelper(cfg.CredsStore, host)
	}
	return "", "", nil
}

// load returns the parsed file, reading it again if it changed.
func (d *DockerCredentials) load() (dockerConfig, error) {
	st := stampOf(d.path)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loaded && st == d.stamp {
		return d.cfg, d.err
	}
	d.loaded, d.stamp, d.cfg, d.err = true, st, dockerConfig{}, nil
	if !st.exists {
		return d.cfg, nil // anonymous until the file appears
	}
	b, err := os.ReadFile(d.path)
	if err == nil {
		err = json.Unmarshal(b, &d.cfg)
	}
	if err != nil {
		d.err = fmt.Errorf("docker config %s: %w: %w", d.path, err, errdefs.ErrInvalidArgument)
		return dockerConfig{}, d.err
	}
	log.L.WithField("path", d.path).Debug("docker config read")
	return d.cfg, nil
}

// lookupAuth finds host's entry; docker writes keys as a bare host, an
// URL ("https://host", "https://host/v1/"), and Docker Hub as
// "https://index.docker.io/v1/".
func lookupAuth(auths map[string]dockerAuth, host string) (dockerAuth, bool) {
	if a, ok := auths[host]; ok {
		return a, true
	}
	for k, a := range auths {
		h := strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
		h, _, _ = strings.Cut(h, "/")
		if h == host || (h == "index.docker.io" && (host == "registry-1.docker.io" || host == "docker.io")) {
			return a, true
		}
	}
	return dockerAuth{}, false
}

func (a dockerAuth) credentials(host string) (string, string, error) {
	if a.IdentityToken != "" {
		return "", a.IdentityToken, nil
	}
	if a.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return "", "", fmt.Errorf("docker config: auth of %s is not base64: %w", host, errdefs.ErrInvalidArgument)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", "", fmt.Errorf("docker config: auth of %s is not user:password: %w", host, errdefs.ErrInvalidArgument)
		}
		return user, pass, nil
	}
	return a.Username, a.Password, nil
}

// runHelper asks docker-credential-<name> for host's credentials (the
// docker credential helper protocol: "get", the server URL on stdin, JSON
// on stdout). A helper that knows no credentials for host means anonymous.
func runHelper(name, host string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	defer cancel()
	bin := "docker-credential-" + name
	cmd := exec.CommandContext(ctx, bin, "get")
	cmd.Stdin = strings.NewReader(host)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stdout.String() + " " + stderr.String())
		if strings.Contains(strings.ToLower(msg), "credentials not found") {
			return "", "", nil
		}
		var ee *exec.Error
		if errors.As(err, &ee) {
			return "", "", fmt.Errorf("credential helper %s for %s: %w: %w", bin, host, err, errdefs.ErrNotFound)
		}
		return "", "", fmt.Errorf("credential helper %s for %s: %w: %s: %w", bin, host, err, msg, errdefs.ErrUnauthenticated)
	}
	var out struct{ Username, Secret string }
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return "", "", fmt.Errorf("credential helper %s for %s: bad answer: %w: %w", bin, host, err, errdefs.ErrUnauthenticated)
	}
	if out.Username == "<token>" {
		return "", out.Secret, nil // an identity token, as docker marks it
	}
	return out.Username, out.Secret, nil
}
