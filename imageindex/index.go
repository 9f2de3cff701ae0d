// Package imageindex asks containerd which images of a namespace reach a
// chain ID, and with which layer blob (issue 14, point 3). Within one
// namespace containerd's unpacker skips a chain ID that exists, so a second
// image built on a lazily mounted layer never reaches the snapshotter's
// Prepare: only containerd's image store knows it exists. The package also
// removes the containerd snapshots of a forged layer once nothing uses
// them, so that the next pull unpacks the real one.
//
// It connects lazily: the snapshotter may start before containerd.
package imageindex

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/snapshot"
)

// forgedLabel marks the snapshot of a layer found forged.
const forgedLabel = labels.Forged

// callTimeout bounds one question to containerd: a Prepare waits on it.
const callTimeout = 10 * time.Second

// dialTimeout bounds one connection attempt to containerd (the client
// dials lazily, at the first question): a question to a socket that exists
// but does not answer fails after this, not after callTimeout, and every
// container Prepare asking pays it until containerd answers, so it is kept
// short.
const dialTimeout = 2 * time.Second

// maxConfigs bounds the cache of chain IDs per config digest; a node keeps
// far fewer images, and a full cache is simply dropped.
const maxConfigs = 4096

// Index answers questions about containerd's images through its socket.
type Index struct {
	address string

	mu     sync.Mutex
	client *client.Client
	closed bool // no new connection after Close
	// chains caches the chain IDs an image config implies, per config
	// digest: a config is immutable, and reading it costs a content read.
	chains map[digest.Digest][]digest.Digest
}

// New returns an Index of the containerd listening at address. Nothing is
// dialled until the first question.
func New(address string) *Index {
	return &Index{address: address, chains: map[digest.Digest][]digest.Digest{}}
}

// Connect dials containerd now, so that the first container Prepare that
// asks does not pay for it; a failure is retried by the next question.
func (x *Index) Connect() error {
	_, err := x.connect()
	return err
}

// Close closes the connection, if one was made.
func (x *Index) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closed = true
	if x.client == nil {
		return nil
	}
	err := x.client.Close()
	x.client = nil
	return err
}

func (x *Index) connect() (*client.Client, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.client != nil {
		return x.client, nil
	}
	if x.closed {
		return nil, fmt.Errorf("image index of containerd at %s is closed: %w", x.address, errdefs.ErrUnavailable)
	}
	// No socket at all (a wrong [containerd] address, containerd not
	// started yet) fails at once rather than after a dial timeout: each
	// container Prepare would wait that long.
	if _, err := os.Stat(x.address); err != nil {
		return nil, fmt.Errorf("failed to connect to containerd at %s ([containerd] address): %w: %w", x.address, errdefs.ErrUnavailable, err)
	}
	c, err := client.New(x.address, client.WithTimeout(dialTimeout))
	if err != nil {
		return nil, fmt.Errorf("failed to connect to containerd at %s: %w", x.address, err)
	}
	x.client = c
	return c, nil
}

// OtherBlobs returns, for each layer asked about, the images of ctx's
// namespace (the namespace of the containerd call being served) that reach
// its chain ID with another layer blob, from one listing of the images. An
// image whose manifest or config is not in the content store (another
// platform, a pull in progress) cannot be judged and is skipped.
func (x *Index) OtherBlobs(ctx context.Context, layers []snapshot.ChainLayer) ([][]string, error) {
	ns, ok := namespaces.Namespace(ctx)
	if !ok {
		return nil, fmt.Errorf("no containerd namespace in the request: %w", errdefs.ErrFailedPrecondition)
	}
	c, err := x.connect()
	if err != nil {
		return nil, err
	}
	// A fresh context: the incoming one carries gRPC metadata of the call
	// being served, not meant for containerd.
	qctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.WithoutCancel(ctx), ns), callTimeout)
	defer cancel()
	imgs, err := c.ImageService().List(qctx)
	if err != nil {
		return nil, fmt.Errorf("failed to list the images of namespace %s: %w", ns, err)
	}
	cs := c.ContentStore()
	others := make([][]string, len(layers))
	for _, img := range imgs {
		blobs, err := x.blobsByChainID(qctx, cs, img)
		if err != nil {
			log.G(ctx).WithError(err).WithField("image_ref", img.Name).Debug("cannot tell which layers an image reaches; skipped")
			continue
		}
		addOthers(others, layers, img.Name, blobs)
	}
	return others, nil
}

// addOthers adds image name to others[i] for each layer i it reaches at the
// layer's chain ID with another blob (blobs: the image's blob by chain ID).
// The same blob is the same layer: not another image's claim.
func addOthers(others [][]string, layers []snapshot.ChainLayer, name string, blobs map[digest.Digest]digest.Digest) {
	for i, l := range layers {
		if blob, ok := blobs[l.ChainID]; ok && blob != l.Layer {
			others[i] = append(others[i], name)
		}
	}
}

// blobsByChainID returns the layer blob with which img reaches each of its
// chain IDs.
func (x *Index) blobsByChainID(ctx context.Context, cs content.Store, img images.Image) (map[digest.Digest]digest.Digest, error) {
	manifest, err := images.Manifest(ctx, cs, img.Target, platforms.Default())
	if err != nil {
		return nil, err
	}
	chains, err := x.chainIDs(ctx, cs, manifest.Config)
	if err != nil {
		return nil, err
	}
	if len(chains) != len(manifest.Layers) {
		return nil, fmt.Errorf("config %s names %d layers, manifest %d: %w", manifest.Config.Digest, len(chains), len(manifest.Layers), errdefs.ErrInvalidArgument)
	}
	out := make(map[digest.Digest]digest.Digest, len(chains))
	for i, c := range chains {
		out[c] = manifest.Layers[i].Digest
	}
	return out, nil
}

// chainIDs returns the chain IDs of the layers a config names, cached.
func (x *Index) chainIDs(ctx context.Context, cs content.Store, config ocispec.Descriptor) ([]digest.Digest, error) {
	x.mu.Lock()
	chains, ok := x.chains[config.Digest]
	x.mu.Unlock()
	if ok {
		return chains, nil
	}
	raw, err := content.ReadBlob(ctx, cs, config)
	if err != nil {
		return nil, fmt.Errorf("failed to read config %s: %w", config.Digest, err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(raw, &img); err != nil {
		return nil, fmt.Errorf("config %s: %w: %w", config.Digest, errdefs.ErrInvalidArgument, err)
	}
	chains = identity.ChainIDs(img.RootFS.DiffIDs)
	x.mu.Lock()
	if len(x.chains) >= maxConfigs {
		clear(x.chains)
	}
	x.chains[config.Digest] = chains
	x.mu.Unlock()
	return chains, nil
}

// RemoveForged removes, in every namespace, the snapshots of snapshotter
// (the name containerd knows lazyfs by) that lazyfs marked forged, so that
// containerd's next pull of an image reaching that chain ID unpacks its
// own layer instead of skipping it. A snapshot still in use (a container's
// rootfs, a layer on top of it) cannot be removed yet: inUse counts them,
// for a later call. containerd's garbage collector then removes the
// snapshot from lazyfs.
func (x *Index) RemoveForged(ctx context.Context, snapshotter string) (removed, inUse int, err error) {
	c, err := x.connect()
	if err != nil {
		return 0, 0, err
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	nss, err := c.NamespaceService().List(qctx)
	if err != nil {
		return 0, 0, fmt.Errorf("failed to list containerd's namespaces: %w", err)
	}
	filter := fmt.Sprintf("labels.%q", forgedLabel)
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(qctx, ns)
		sn := c.SnapshotService(snapshotter)
		var keys []string
		if err := sn.Walk(nctx, func(_ context.Context, info snapshots.Info) error {
			keys = append(keys, info.Name)
			return nil
		}, filter); err != nil {
			return removed, inUse, fmt.Errorf("failed to list the snapshots of namespace %s: %w", ns, err)
		}
		for _, key := range keys {
			switch err := sn.Remove(nctx, key); {
			case err == nil:
				removed++
				log.G(ctx).WithField("namespace", ns).WithField("snapshot", key).Warn("forged layer's snapshot removed: the next pull unpacks the real layer")
			case errdefs.IsFailedPrecondition(err):
				inUse++ // a container or a layer on top still uses it
			case errdefs.IsNotFound(err):
			default:
				return removed, inUse, fmt.Errorf("failed to remove forged snapshot %s in namespace %s: %w", key, ns, err)
			}
		}
	}
	return removed, inUse, nil
}
