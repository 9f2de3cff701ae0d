package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindRepoRoot(t *testing.T) {
	dir := t.TempDir()
	write := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repo := filepath.Join(dir, "repo")
	write(filepath.Join(repo, "go.mod"), "module "+modulePath+"\n\ngo 1.26\n")
	// A nested module of another name must not stop the search.
	write(filepath.Join(repo, "tools", "go.mod"), "module example.com/tools\n")
	if err := os.MkdirAll(filepath.Join(repo, "tools", "x", "y"), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, from, want string
		wantErr          bool
	}{
		{name: "at the root", from: repo, want: repo},
		{name: "below the root", from: filepath.Join(repo, "tools", "x", "y"), want: repo},
		{name: "outside", from: dir, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findRepoRoot(tc.from)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("findRepoRoot(%s) = %s, want an error", tc.from, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("findRepoRoot(%s) = %q, %v; want %q", tc.from, got, err, tc.want)
			}
		})
	}
}

func TestLoadEnvFindsThisRepository(t *testing.T) {
	t.Setenv("LAZYFS_REPO", "")
	t.Setenv("LAZYFS_TOOLS", "/opt/tools")
	env, err := LoadEnv()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(env.RepoRoot, "tests", "harness", "env.go")); err != nil {
		t.Errorf("RepoRoot %s does not hold this package: %v", env.RepoRoot, err)
	}
	if want := filepath.Join(env.RepoRoot, "bin", "lazyfs-snapshotter"); env.SnapshotterBin() != want {
		t.Errorf("SnapshotterBin() = %s, want %s", env.SnapshotterBin(), want)
	}
	if want := "/opt/tools/containerd-2.3.7"; env.ContainerdV2Dir != want {
		t.Errorf("ContainerdV2Dir = %s, want %s", env.ContainerdV2Dir, want)
	}
}

func TestCheckBinariesNamesTheMissingOnes(t *testing.T) {
	env := Env{BinDir: t.TempDir()}
	if err := os.WriteFile(env.Bin("present"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env.Bin("not-executable"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := env.CheckBinaries("present"); err != nil {
		t.Errorf("CheckBinaries(present) = %v", err)
	}
	err := env.CheckBinaries("present", "not-executable", "absent")
	if err == nil {
		t.Fatal("CheckBinaries did not report missing binaries")
	}
	for _, want := range []string{env.Bin("not-executable"), env.Bin("absent"), "make build"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
