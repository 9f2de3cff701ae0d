package harness

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRegistryServesAndStops(t *testing.T) {
	RequireTools(t)
	ctx := context.Background()
	r, err := StartRegistry(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	Track(t, r)
	if !strings.HasPrefix(r.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %s, want a loopback address", r.Addr())
	}
	resp, err := http.Get("http://" + r.Addr() + "/v2/_catalog")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/_catalog: %s", resp.Status)
	}

	// Two registries at once get two ports.
	r2, err := StartRegistry(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	Track(t, r2)
	if r2.Addr() == r.Addr() {
		t.Errorf("both registries listen on %s", r.Addr())
	}

	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Stop", r.Addr())
	}
	if err := r.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}
