package chunks

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// ErrVerification is returned (wrapped) by Reader.ReadAt when a chunk's
// bytes from the source do not decompress to the chunk's size and digest,
// even after one retry. It is of class errdefs.ErrDataLoss.
var ErrVerification = fmt.Errorf("chunk failed verification: %w", errdefs.ErrDataLoss)
