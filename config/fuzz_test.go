package config_test

import (
	"errors"
	"os"
	"testing"

	"github.com/lazyfs/lazyfs/config"
)

// FuzzParse guards that no document makes Parse panic (the checker blanks
// byte ranges and computes lines from parser ranges), and that whatever it
// accepts is valid.
func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile("../misc/config.toml"); err == nil {
		f.Add(example)
	}
	for _, seed := range []string{
		"",
		"\"root\" = \"/a\"\n'workers'.\"mode\" = 'shared'\n",
		"workers . mode = \"shared\"\n",
		"\"\" = 1\n",
		"[ workers ]\r\nfuse_readers = 0x10\r\n",
		"workers = { mode = \"x\", fuse_readers = \"4\" }\n[workers]\n",
		"[bogus]\nx = \"\"\"\nmulti\nline\n\"\"\"\n[layers]\nmax_entries = 0\n",
		"layers.max_toc_size = \"\"\"\n64MiB\"\"\"\n",
		"root = 1\n[workers\n",
		"[[a]]\n[[a]]\nb = [1, {c = 2}]\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := config.Parse(doc)
		if err != nil {
			var cerr *config.Error
			if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
				t.Fatalf("error %v is not a *config.Error with problems", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid config: %v", err)
		}
	})
}
