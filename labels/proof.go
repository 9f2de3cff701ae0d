package labels

import (
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
)

// ChainID is the chain ID of a layer with diffID on top of the chain
// parent ("" for a base layer, whose chain ID is its DiffID), as the OCI
// image spec defines it: sha256(parent + " " + diffID).
func ChainID(parent, diffID digest.Digest) digest.Digest {
	if parent == "" {
		return diffID
	}
	return identity.ChainID([]digest.Digest{parent, diffID})
}
