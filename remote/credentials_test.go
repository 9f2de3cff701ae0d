package remote

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
	"github.com/lazyfs/lazyfs/internal/faultproxy"
	"github.com/lazyfs/lazyfs/internal/testregistry"
)

func writeFile(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	// Through a rename, as docker writes it: a new inode.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestDockerCredentialsAuths(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret:with:colons"))
	writeFile(t, path, `{"auths": {
		"reg.example:5000": {"auth": "`+auth+`"},
		"https://other.example/v1/": {"username": "bob", "password": "pw"},
		"tok.example": {"identitytoken": "refresh-me"},
		"https://index.docker.io/v1/": {"auth": "`+base64.StdEncoding.EncodeToString([]byte("hub:pw"))+`"}
	}}`, 0o600)
	d := NewDockerCredentials(path)
	for host, want := range map[string][2]string{
		"reg.example:5000":     {"alice", "s3cret:with:colons"},
		"other.example":        {"bob", "pw"},
		"tok.example":          {"", "refresh-me"},
		"registry-1.docker.io": {"hub", "pw"},
		"unknown.example":      {"", ""},
	} {
		u, s, err := d.Credentials(host)
		if err != nil || u != want[0] || s != want[1] {
			t.Errorf("%s: %q %q %v, want %q", host, u, s, err, want)
		}
	}
	// Changed on disk: read again.
	writeFile(t, path, `{"auths": {"reg.example:5000": {"username": "carol", "password": "new"}}}`, 0o600)
	if u, s, _ := d.Credentials("reg.example:5000"); u != "carol" || s != "new" {
		t.Fatalf("after the change: %q %q", u, s)
	}
}

func TestDockerCredentialsBadInput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	d := NewDockerCredentials(path)
	if u, s, err := d.Credentials("h"); err != nil || u != "" || s != "" {
		t.Fatalf("missing file: %q %q %v, want anonymous", u, s, err)
	}
	writeFile(t, path, `{"auths": `, 0o600)
	if _, _, err := d.Credentials("h"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("broken JSON: %v, want invalid argument", err)
	}
	writeFile(t, path, `{"auths": {"h": {"auth": "not base64!"}}}`, 0o600)
	if _, _, err := d.Credentials("h"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad auth: %v, want invalid argument", err)
	}
	writeFile(t, path, `{"auths": {"h": {"auth": "`+base64.StdEncoding.EncodeToString([]byte("nocolon"))+`"}}}`, 0o600)
	if _, _, err := d.Credentials("h"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("auth without colon: %v, want invalid argument", err)
	}
}

// writeHelper installs docker-credential-<name> in a dir put first in PATH.
func writeHelper(t *testing.T, name, script string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-"+name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
}

func TestDockerCredentialsHelpers(t *testing.T) {
	writeHelper(t, "per", `read host; [ "$1" = get ] || exit 3; echo "{\"Username\":\"per-$host\",\"Secret\":\"x\"}"`)
	writeHelper(t, "store", `read host; case $host in known) echo '{"Username":"<token>","Secret":"idtok"}';; *) echo "credentials not found in native keychain"; exit 1;; esac`)
	writeHelper(t, "broken", `echo "boom" >&2; exit 2`)
	path := filepath.Join(t.TempDir(), "config.json")
	writeFile(t, path, `{"credHelpers": {"a": "per", "b": "broken", "c": "absent"}, "credsStore": "store",
		"auths": {"d": {"username": "u", "password": "p"}}}`, 0o600)
	d := NewDockerCredentials(path)
	for host, want := range map[string][2]string{
		"a":     {"per-a", "x"},
		"d":     {"u", "p"},    // auths before the store
		"known": {"", "idtok"}, // <token>: an identity token
		"other": {"", ""},      // not found: anonymous
	} {
		u, s, err := d.Credentials(host)
		if err != nil || u != want[0] || s != want[1] {
			t.Errorf("%s: %q %q %v, want %q", host, u, s, err, want)
		}
	}
	if _, _, err := d.Credentials("b"); !errdefs.IsUnauthorized(err) {
		t.Errorf("failing helper: %v, want unauthenticated", err)
	}
	if _, _, err := d.Credentials("c"); !errdefs.IsNotFound(err) {
		t.Errorf("missing helper: %v, want not found", err)
	}
}

func TestDockerConfigPath(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", "/etc/dc")
	if p := DockerConfigPath("/x/config.json"); p != "/x/config.json" {
		t.Errorf("configured: %s", p)
	}
	if p := DockerConfigPath(""); p != "/etc/dc/config.json" {
		t.Errorf("DOCKER_CONFIG: %s", p)
	}
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("HOME", "/home/u")
	if p := DockerConfigPath(""); p != "/home/u/.docker/config.json" {
		t.Errorf("HOME: %s", p)
	}
	t.Setenv("HOME", "")
	if p := DockerConfigPath(""); p != "/root/.docker/config.json" {
		t.Errorf("no HOME: %s", p)
	}
}

// A running reader whose registry changes its password: tokens expire,
// the docker config now names a helper that knows the new password, and
// reads go on without an error.
func TestCredentialsChangeWhileReading(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	writeHelper(t, "rotated", `read host; echo '{"Username":"lazy","Secret":"second"}'`)
	cfg := filepath.Join(dir, "config.json")
	reg := testregistry.New(t, "test/repo")
	blob := testregistry.Noise(64<<10, t.Name())
	d := reg.AddBlob(blob)
	up, _, _ := strings.Cut(reg.Ref("x"), "/")
	p, err := faultproxy.Start(faultproxy.Options{Upstream: up, Seed: 1, Token: &faultproxy.TokenOptions{Username: "lazy", Password: "first", TTL: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	writeFile(t, cfg, `{"auths": {"`+p.Addr()+`": {"auth": "`+base64.StdEncoding.EncodeToString([]byte("lazy:first"))+`"}}}`, 0o600)
	creds := NewDockerCredentials(cfg)
	b, err := NewResolver(quick(Options{ReadTimeout: 5 * time.Second, Credentials: creds.Credentials})).Blob(ctx, p.Addr()+"/test/repo:x", d)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if _, err := b.ReadAt(ctx, buf, 0); err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfg, `{"credHelpers": {"`+p.Addr()+`": "rotated"}}`, 0o600)
	p.SetCredentials("lazy", "second")
	p.ExpireTokens()
	if _, err := b.ReadAt(ctx, buf, 100); err != nil {
		t.Fatalf("after the password changed: %v (%+v)", err, p.Counters())
	}
}
