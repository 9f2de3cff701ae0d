package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/internal/faultproxy"
	"github.com/lazyfs/lazyfs/tests/harness"
)

// longRunEnv makes TestPrivateRegistryToken run the full loop:
// tokens expiring every 30 s during 2 minutes of reads.
const longRunEnv = "LAZYFS_LONG_RUN"

// writeDockerConfig writes a docker config.json through a rename, as
// docker does.
func writeDockerConfig(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestPrivateRegistryToken serves the eStargz image from a private
// registry: every request needs a bearer token from a token server that
// wants a username and password, and tokens expire (server side, long
// before the expires_in they were announced with, so that only a refused
// request tells the worker). The worker's credentials come first from a
// docker config.json written after the snapshotter started, then from a
// credential helper the file is switched to (with a new password at the
// registry). Containers read and checksum every file in a loop, with the
// worker's caches off and the page cache dropped, so that every loop
// reaches the registry: no read may fail.
func TestPrivateRegistryToken(t *testing.T) {
	ttl, loop := 2*time.Second, 8*time.Second
	if os.Getenv(longRunEnv) != "" {
		ttl, loop = 30*time.Second, 2*time.Minute
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	helperDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(helperDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The helper answers the docker credential helper protocol from a
	// file the test writes, and counts its calls.
	helper := fmt.Sprintf(`#!/bin/sh
[ "$1" = get ] || exit 3
read host
echo x >> %[1]s/helper.calls
cat %[1]s/helper.answer
`, dir)
	if err := os.WriteFile(filepath.Join(helperDir, "docker-credential-lazytest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	// Workers inherit the snapshotter's PATH, which inherits ours.
	t.Setenv("PATH", helperDir+":"+os.Getenv("PATH"))

	s := startStackWith(t, harness.V2, harness.SnapshotterOptions{Env: env, Config: map[string]any{
		"registry": map[string]any{"docker_config": cfgPath},
		// Every read goes to the registry: no disk cache, a memory
		// tier too small for any chunk.
		"cache":  map[string]any{"size": 0},
		"layers": map[string]any{"memory_cache_size": 1},
	}})
	proxy := startFaultProxy(t, s, faultproxy.Options{Seed: 1, Token: &faultproxy.TokenOptions{
		Username: "lazy", Password: "first", TTL: ttl, AnnounceTTL: time.Hour,
	}})
	img := s.convertToEStargz(t, proxy.Addr())
	auth := base64.StdEncoding.EncodeToString([]byte("lazy:first"))
	writeDockerConfig(t, cfgPath, `{"auths": {"`+proxy.Addr()+`": {"auth": "`+auth+`"}}}`)
	if _, err := s.ctrd.Ctr(context.Background(), "image", "pull", "--plain-http", "--user", "lazy:first",
		"--snapshotter", "lazyfs", img.ref); err != nil {
		t.Fatal(err)
	}
	s.checkRemoteLabels(t, img)

	readLoop := func(phase string, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for i := 0; i == 0 || time.Now().Before(deadline); i++ {
			dropPageCache(t)
			s.runChecksOf(t, img.ref, "private-"+phase+"-"+strconv.Itoa(i))
			if t.Failed() {
				t.Fatalf("%s: loop %d failed (%+v)", phase, i, proxy.Counters())
			}
		}
	}

	before := proxy.Counters()
	readLoop("config", loop)
	c := proxy.Counters()
	t.Logf("config.json: %d tokens issued, %d requests refused for an expired token", c.TokensIssued-before.TokensIssued, c.Unauthorized-before.Unauthorized)
	if c.TokensIssued-before.TokensIssued < 2 || c.Unauthorized == before.Unauthorized {
		t.Fatalf("no token expired and was fetched again during the loop: %+v", c)
	}

	// New password at the registry; the config now names a helper that
	// knows it. Expired tokens make the worker ask for credentials again.
	if err := os.WriteFile(filepath.Join(dir, "helper.answer"), []byte(`{"Username":"lazy","Secret":"second"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	writeDockerConfig(t, cfgPath, `{"credHelpers": {"`+proxy.Addr()+`": "lazytest"}}`)
	proxy.SetCredentials("lazy", "second")
	proxy.ExpireTokens()
	before = proxy.Counters()
	readLoop("helper", loop)
	c = proxy.Counters()
	calls, _ := os.ReadFile(filepath.Join(dir, "helper.calls"))
	t.Logf("credential helper: called %d times, %d tokens issued", len(calls)/2, c.TokensIssued-before.TokensIssued)
	if len(calls) == 0 || c.TokensIssued == before.TokensIssued {
		t.Fatalf("the credential helper was never asked (calls %q, %+v)", calls, c)
	}
}
