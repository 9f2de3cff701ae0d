package harness

import (
	"context"
	"errors"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
)

// Proxy is a reverse proxy in front of a registry, for lazy-pull tests: it
// counts the body bytes served per blob (GET /v2/<name>/blobs/<digest>,
// ranged or not), can flip bytes of a blob at given offsets and can delay
// every request. Everything else passes through unchanged, including HEAD,
// manifests, uploads, Range and Content-Range, and the Host header (so the
// registry's Location headers point back at the proxy).
type Proxy struct {
	ln        net.Listener
	srv       *http.Server
	transport *http.Transport
	served    chan struct{} // closed when Serve returns
	closeOnce sync.Once
	closeErr  error

	latency atomic.Int64 // time.Duration added before each request

	// link paces blob bodies to a bandwidth shared by all of them.
	linkMu   sync.Mutex
	linkRate int64     // bytes per second; 0: no cap
	linkFree time.Time // when the link has sent what it was given

	mu      sync.Mutex
	stats   map[digest.Digest]*proxyBlobStats
	corrupt map[digest.Digest]map[int64]int // offset -> flips left, <0 = forever
}

// proxyBlobStats is what the proxy counted for one blob.
type proxyBlobStats struct {
	bytes    int64
	requests int
	heads    int // HEAD requests (size lookups)
	full     int
}

// StartProxy starts a proxy for the registry at upstream ("127.0.0.1:5000",
// plain http), listening on a free port of 127.0.0.1. Close stops it.
func StartProxy(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		ln:      ln,
		served:  make(chan struct{}),
		stats:   map[digest.Digest]*proxyBlobStats{},
		corrupt: map[digest.Digest]map[int64]int{},
		transport: &http.Transport{
			// No Proxy from the environment: tests talk to loopback only. No
			// compression: the transport would otherwise ask for gzip and
			// hand back different bytes than the registry sent.
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
		},
	}
	target := &url.URL{Scheme: "http", Host: upstream}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport:      p.transport,
		ModifyResponse: p.modifyResponse,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.G(r.Context()).WithError(err).WithField("path", r.URL.Path).Warn("test proxy request failed")
			w.WriteHeader(http.StatusBadGateway)
		},
		ErrorLog: stdlog.New(proxyErrorLog{}, "", 0),
	}
	p.srv = &http.Server{Handler: p.handler(rp), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.served)
		_ = p.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return p, nil
}

// handler counts blob requests and applies the latency before proxying.
func (p *Proxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dgst, ok := blobPathDigest(r.URL.Path); ok && r.Method == http.MethodGet {
			p.countRequest(dgst, r.Header.Get("Range") == "")
		} else if ok && r.Method == http.MethodHead {
			p.countHead(dgst)
		}
		if d := time.Duration(p.latency.Load()); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Addr returns the proxy's "127.0.0.1:port", to use as the registry host.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every request (not only blobs) by d before it is
// forwarded; 0 turns the delay off.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// SetBandwidth caps the blob bytes the proxy sends, all responses together,
// at bitsPerSecond (a link's speed, e.g. 200e6); 0 removes the cap.
func (p *Proxy) SetBandwidth(bitsPerSecond int64) {
	p.linkMu.Lock()
	p.linkRate, p.linkFree = bitsPerSecond/8, time.Time{}
	p.linkMu.Unlock()
}

// pace waits until a link of the set bandwidth has sent n more bytes after
// those it was given before, as a shared link would: concurrent responses
// share the rate.
func (p *Proxy) pace(ctx context.Context, n int) {
	p.linkMu.Lock()
	if p.linkRate <= 0 {
		p.linkMu.Unlock()
		return
	}
	now := time.Now()
	start := p.linkFree
	if start.Before(now) {
		start = now
	}
	p.linkFree = start.Add(time.Duration(float64(n) / float64(p.linkRate) * float64(time.Second)))
	until := p.linkFree
	p.linkMu.Unlock()
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Close stops the proxy and drops its connections, both to clients and to
// the registry. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		err := p.srv.Close()
		<-p.served
		p.transport.CloseIdleConnections()
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.closeErr = err
		}
	})
	return p.closeErr
}

// blobPathDigest returns the digest of a blob URL path
// (/v2/<name>/blobs/<digest>); uploads and other paths are not blobs.
func blobPathDigest(urlPath string) (digest.Digest, bool) {
	if !strings.HasPrefix(urlPath, "/v2/") {
		return "", false
	}
	i := strings.LastIndex(urlPath, "/blobs/")
	if i < 0 {
		return "", false
	}
	dgst, err := digest.Parse(urlPath[i+len("/blobs/"):])
	if err != nil {
		return "", false
	}
	return dgst, true
}

// proxyErrorLog sends the reverse proxy's own messages (a client that went
// away mid-body, say) to the debug log instead of the test's stderr.
type proxyErrorLog struct{}

func (proxyErrorLog) Write(b []byte) (int, error) {
	log.G(context.Background()).WithField("error", strings.TrimSpace(string(b))).Debug("test proxy transfer interrupted")
	return len(b), nil
}
