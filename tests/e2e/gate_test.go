package e2e

import (
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// registryGate stands in front of a registry on a fixed loopback address and
// can take it off the network and bring it back: Down closes the listener and
// every connection (clients get "connection refused", as from a stopped
// registry), Up listens on the same address again, so image references that
// name the gate stay valid. The harness proxy cannot do this: it is closed
// for good, and a restarted registry gets a new port.
type registryGate struct {
	addr string
	rp   *httputil.ReverseProxy
	tr   *http.Transport

	mu  sync.Mutex
	srv *http.Server
}

// startGate starts an open gate in front of upstream (host:port); it is
// closed when t ends.
func startGate(t *testing.T, upstream string) *registryGate {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: upstream}
	g := &registryGate{tr: &http.Transport{DisableCompression: true}}
	g.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport: g.tr,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	g.serve(ln)
	t.Cleanup(func() {
		if err := g.Down(); err != nil {
			t.Errorf("close registry gate: %v", err)
		}
	})
	return g
}

// Addr is the gate's host:port, to use as the registry host.
func (g *registryGate) Addr() string { return g.addr }

func (g *registryGate) serve(ln net.Listener) {
	srv := &http.Server{Handler: g.rp, ReadHeaderTimeout: 10 * time.Second}
	g.mu.Lock()
	g.srv = srv
	g.mu.Unlock()
	go func() { _ = srv.Serve(ln) }() // returns ErrServerClosed after Down
}

// Down takes the registry off the network. It is safe to call when down.
func (g *registryGate) Down() error {
	g.mu.Lock()
	srv := g.srv
	g.srv = nil
	g.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	g.tr.CloseIdleConnections()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Up serves on the same address again.
func (g *registryGate) Up() error {
	g.mu.Lock()
	up := g.srv != nil
	g.mu.Unlock()
	if up {
		return nil
	}
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		return err
	}
	g.serve(ln)
	return nil
}
