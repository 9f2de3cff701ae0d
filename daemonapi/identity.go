package daemonapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
)

// Identity is what a standby worker reads on its identity pipe to become a
// worker (lazyfsd --standby-fd): the snapshotter starts one ahead of need,
// so that a successor taking over a dead worker's mounts skips exec and the
// Go runtime's start-up.
type Identity struct {
	ID            string `json:"id"`
	APISocket     string `json:"api_socket"`
	ControlSocket string `json:"control_socket"`
}

// maxIdentity bounds the identity line.
const maxIdentity = 4 << 10

// ReadIdentity reads one identity line from r. It returns io.EOF when r
// ends first: the snapshotter needs the standby no more.
func ReadIdentity(r io.Reader) (Identity, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxIdentity), maxIdentity).ReadBytes('\n')
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = fmt.Errorf("identity line not terminated: %w", errdefs.ErrInvalidArgument)
		}
		return Identity{}, err
	}
	var id Identity
	if err := json.Unmarshal(line, &id); err != nil {
		return Identity{}, fmt.Errorf("identity %q: %v: %w", line, err, errdefs.ErrInvalidArgument)
	}
	if id.ID == "" || id.APISocket == "" || id.ControlSocket == "" {
		return Identity{}, fmt.Errorf("identity %q lacks a field: %w", line, errdefs.ErrInvalidArgument)
	}
	return id, nil
}
