package chunks

import (
	"testing"
	"time"
)

func TestZZProbe(t *testing.T) {
	for _, sl := range streamLayouts {
		st := time.Now()
		buildSmallFiles(t, 600, sl.opts...)
		t.Logf("%s: %v", sl.name, time.Since(st))
	}
}
