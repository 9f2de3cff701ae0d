package config_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/lazyfs/lazyfs/config"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte("[workers]\nmode = \"shared\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := config.Default()
	want.Workers.Mode = config.WorkersShared
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load = %+v, want %+v", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "absent.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file = %v, want fs.ErrNotExist", err)
	}
}

// TestLoadNamesThePath guards that problems point at the file the operator
// has to edit, not at a generic name.
func TestLoadNamesThePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lazyfs.toml")
	if err := os.WriteFile(path, []byte("\nlog_level = \"loud\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path)
	want := path + `:2: log_level: "loud" is not one of "trace", "debug", "info", "warn", "error"`
	if err == nil || err.Error() != want {
		t.Fatalf("Load = %v, want %s", err, want)
	}
}

// TestExampleConfig keeps misc/config.toml honest: it must set every key,
// each to its default.
func TestExampleConfig(t *testing.T) {
	const example = "../misc/config.toml"
	got, err := config.Load(example)
	if err != nil {
		t.Fatalf("Load(%s): %v", example, err)
	}
	if !reflect.DeepEqual(got, config.Default()) {
		t.Errorf("%s differs from Default():\n got %+v\nwant %+v", example, got, config.Default())
	}

	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := toml.Marshal(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	if have, all := keysOf(t, data), keysOf(t, defaults); !reflect.DeepEqual(have, all) {
		t.Errorf("%s sets keys %q, want every key: %q", example, have, all)
	}
}

// TestMarshalRoundTrip guards that a Config printed with go-toml (e.g. the
// effective configuration, for an operator) parses back to itself.
func TestMarshalRoundTrip(t *testing.T) {
	c := config.Default()
	c.Workers.Mode = config.WorkersShared
	c.Workers.ReadyTimeout = config.Duration(1500 * time.Millisecond)
	c.Layers.MaxTOCSize = 100 * config.MB
	c.Layers.MemoryCacheSize = 12345
	c.Debug.Address = "[::1]:9100"
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		t.Fatal(err)
	}
	got, err := config.Parse(buf.Bytes())
	if err != nil {
		t.Fatalf("Parse of\n%s: %v", buf.String(), err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip = %+v, want %+v", got, c)
	}
}

// keysOf returns the sorted dotted keys of every value in a document.
func keysOf(t *testing.T, doc []byte) []string {
	t.Helper()
	var m map[string]any
	if err := toml.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			keys = append(keys, prefix+k)
		}
	}
	walk("", m)
	slices.Sort(keys)
	return keys
}
