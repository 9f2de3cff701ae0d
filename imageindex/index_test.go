package imageindex

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lazyfs/lazyfs/snapshot"
)

// TestAddOthers guards the comparison: an image reaching a layer's chain
// ID with another blob is named, one with the same blob or not reaching
// it is not.
func TestAddOthers(t *testing.T) {
	chain, blob, other := digest.FromString("chain"), digest.FromString("blob"), digest.FromString("other blob")
	layers := []snapshot.ChainLayer{{ChainID: chain, Layer: blob}}
	others := make([][]string, 1)
	addOthers(others, layers, "same", map[digest.Digest]digest.Digest{chain: blob})
	addOthers(others, layers, "elsewhere", map[digest.Digest]digest.Digest{digest.FromString("x"): other})
	addOthers(others, layers, "forger", map[digest.Digest]digest.Digest{chain: other})
	if !slices.Equal(others[0], []string{"forger"}) {
		t.Errorf("others = %v, want only the image with another blob", others[0])
	}
}

// TestBlobsByChainID: the chain IDs come from the config's DiffIDs (the
// claim), the blobs from the manifest, position by position; a config and
// manifest that disagree on the number of layers are refused.
func TestBlobsByChainID(t *testing.T) {
	ctx := context.Background()
	cs, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	diffIDs := []digest.Digest{digest.FromString("base"), digest.FromString("top")}
	layerBlobs := []digest.Digest{digest.FromString("base blob"), digest.FromString("top blob")}
	put := func(v any, mediaType string) ocispec.Descriptor {
		raw, _ := json.Marshal(v)
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
		if err := content.WriteBlob(ctx, cs, d.Digest.String(), strings.NewReader(string(raw)), d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	config := put(ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}}, ocispec.MediaTypeImageConfig)
	manifest := func(n int) ocispec.Descriptor {
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: config}
		m.SchemaVersion = 2
		for _, b := range layerBlobs[:n] {
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: b, Size: 1})
		}
		return put(m, ocispec.MediaTypeImageManifest)
	}
	x := New("/nonexistent")
	got, err := x.blobsByChainID(ctx, cs, images.Image{Name: "img", Target: manifest(2)})
	if err != nil {
		t.Fatal(err)
	}
	chains := identity.ChainIDs(slices.Clone(diffIDs))
	want := map[digest.Digest]digest.Digest{chains[0]: layerBlobs[0], chains[1]: layerBlobs[1]}
	if len(got) != 2 || got[chains[0]] != want[chains[0]] || got[chains[1]] != want[chains[1]] {
		t.Errorf("blobs by chain ID = %v, want %v", got, want)
	}
	if _, err := x.blobsByChainID(ctx, cs, images.Image{Name: "short", Target: manifest(1)}); err == nil {
		t.Error("a manifest with fewer layers than its config's DiffIDs was accepted")
	}
}

// TestConnectWithoutSocketFailsAtOnce guards the socket check: a wrong
// [containerd] address must not cost every container Prepare a dial
// timeout. The bound is far above a stat and far below dialTimeout.
func TestConnectWithoutSocketFailsAtOnce(t *testing.T) {
	x := New(filepath.Join(t.TempDir(), "containerd.sock"))
	start := time.Now()
	err := x.Connect()
	if took := time.Since(start); took > dialTimeout/2 {
		t.Errorf("Connect took %s with no socket, want an immediate failure", took)
	}
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "[containerd] address") {
		t.Fatalf("Connect = %v, want an unavailable error naming [containerd] address", err)
	}
}

// TestSilentSocketIsBounded guards dialTimeout: containerd's client dials
// lazily, and a socket that exists but never answers (containerd hung, or
// another program's socket) fails a question once a connection attempt has
// taken dialTimeout, not after the client's default of 10 s (which
// callTimeout would not cut shorter) that every container Prepare asking
// would pay.
func TestSilentSocketIsBounded(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "containerd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Accepts and never speaks gRPC; what it accepted is closed with l.
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	x := New(sock)
	defer x.Close()
	ctx := namespaces.WithNamespace(context.Background(), "default")
	start := time.Now()
	_, err = x.OtherBlobs(ctx, []snapshot.ChainLayer{{ChainID: digest.FromString("chain"), Layer: digest.FromString("blob")}})
	took := time.Since(start)
	if err == nil {
		t.Fatal("a question to a socket that never answers succeeded")
	}
	if took > 2*dialTimeout {
		t.Errorf("a question to a silent socket took %s, want about %s", took, dialTimeout)
	}
}
