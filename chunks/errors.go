package chunks

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// ErrVerification is returned (wrapped) by Reader.ReadAt when a chunk's
// bytes from the source do not decompress to the chunk's size and digest.
// It is of class errdefs.ErrDataLoss.
var ErrVerification = fmt.Errorf("chunk failed verification: %w", errdefs.ErrDataLoss)

// ErrUnavailable is returned (wrapped, with the source's error) by
// Reader.ReadAt when a chunk is in no cache and the source could not
// provide its bytes: the registry is unreachable, answered an error, or
// sent less than asked. A later read may succeed. It is of class
// errdefs.ErrUnavailable.
var ErrUnavailable = fmt.Errorf("chunk source unavailable: %w", errdefs.ErrUnavailable)
