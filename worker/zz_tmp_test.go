package worker_test

import (
	"fmt"
	"os"
	"testing"
)

func TestZZWriteBlob(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		return
	}
	blob, layer, tocDigest := forgeManyEntries(t, 300_000)
	os.WriteFile("/tmp/lzblob", blob, 0o600)
	fmt.Printf("SPEC %s %s\n", layer, tocDigest)
}
