// Package faultproxy is a fault-injecting HTTP proxy in front of an OCI
// registry, for tests of registry access. It listens on loopback only and
// draws its faults from a seeded random source, so a failing run can be
// repeated; counters say what it did, for tests to assert on.
//
// Faults (each a probability per blob request, see Faults): connection
// resets, 5xx answers, 429 with Retry-After, stalls before the answer or
// of the body after it, truncated bodies, bodies longer than the range,
// flipped bytes in range responses, a registry that is down (every
// connection reset). Beside faults it can redirect blob GETs to a second
// address (as registries redirect to a storage service) and require a
// bearer token from its own small token server, tokens that expire after
// a set time.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Faults are the probabilities (0..1) with which a blob request (HEAD or
// GET of /v2/<repo>/blobs/<digest>) meets each fault. One random draw
// decides per request, in the order of the fields: at most one fault per
// request.
type Faults struct {
	Reset     float64 // the connection is reset before any answer
	Status5xx float64 // 503 Service Unavailable
	TooMany   float64 // 429 Too Many Requests with Retry-After
	Stall     float64 // the answer waits StallFor first
	Truncate  float64 // a GET body ends half-way (the connection is closed)
	Lengthen  float64 // a GET body carries extra bytes past the range asked for
	Flip      float64 // one byte of a 206 body is flipped
	StallBody float64 // a GET is answered (status and headers) at once, its body after StallFor

	// RetryAfter is the Retry-After of a 429, in whole seconds (0 sends "0").
	RetryAfter time.Duration
	// StallFor is how long a stalled request or body waits (default 2 s).
	StallFor time.Duration
	// AllRequests applies the faults to every request, not only blobs
	// (manifests, /v2/ pings, token requests excluded).
	AllRequests bool
}

// Counters are what the proxy did since it started (or since Reset).
type Counters struct {
	Requests      int64 // every request that reached the proxy (token requests excluded)
	BlobRequests  int64 // HEAD and GET of blobs, on either address
	Resets        int64
	Status5xx     int64
	TooMany       int64
	Stalls        int64
	Truncated     int64
	Lengthened    int64
	Flipped       int64
	BodyStalls    int64
	Down          int64 // requests reset because the registry was set down
	Redirects     int64 // blob GETs answered with a redirect
	Redirected    int64 // requests served on the redirect address
	Unauthorized  int64 // 401s sent
	TokensIssued  int64
	BodyBytes     int64 // body bytes of blob answers sent in full
	TokenRequests int64
}

// Options configure a Proxy.
type Options struct {
	// Upstream is the registry's "host:port" (plain http).
	Upstream string
	// Seed seeds the random source of the faults.
	Seed uint64
	// Redirect sends blob GETs to a second address of the proxy with a
	// 307, as a registry redirects to its storage.
	Redirect bool
	// Latency is added to every forwarded request, to emulate a registry
	// across a network rather than on loopback.
	Latency time.Duration
	// Token requires "Authorization: Bearer <token>" on /v2/ requests,
	// tokens being issued by the proxy's /token endpoint.
	Token *TokenOptions
}

// TokenOptions configure the proxy's token server.
type TokenOptions struct {
	// Username and Password, if set, are required (basic auth) to get a
	// token; otherwise tokens are handed out anonymously.
	Username, Password string
	// TTL is how long a token is valid (default 60 s). The token server
	// tells clients this value as expires_in unless AnnounceTTL is set.
	TTL time.Duration
	// AnnounceTTL, if set, is the expires_in told to clients: longer than
	// TTL, it makes tokens expire while clients still use them.
	AnnounceTTL time.Duration
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	opts      Options
	ln, redir net.Listener
	srv       *http.Server
	redirSrv  *http.Server
	transport *http.Transport
	wg        sync.WaitGroup

	mu     sync.Mutex
	rng    *rand.Rand
	faults Faults
	script []Fault
	tokens map[string]time.Time // token -> expiry
	user   string               // credentials the token server requires
	pass   string

	down atomic.Bool
	c    counters
}

type counters struct {
	requests, blobRequests, resets, status5xx, tooMany, stalls, truncated, lengthened,
	flipped, bodyStalls, down, redirects, redirected, unauthorized, tokensIssued, bodyBytes, tokenRequests atomic.Int64
}

// Start starts a proxy for opts.Upstream on a free port of 127.0.0.1.
// Close stops it.
func Start(opts Options) (*Proxy, error) {
	if opts.Upstream == "" {
		return nil, errors.New("faultproxy: no upstream")
	}
	if opts.Token != nil && opts.Token.TTL <= 0 {
		t := *opts.Token
		t.TTL = time.Minute
		opts.Token = &t
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		opts:   opts,
		ln:     ln,
		rng:    rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		tokens: map[string]time.Time{},
		transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
		},
	}
	if opts.Token != nil {
		p.user, p.pass = opts.Token.Username, opts.Token.Password
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	p.serveOn(p.srv, ln)
	if opts.Redirect {
		if p.redir, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			p.Close()
			return nil, err
		}
		p.redirSrv = &http.Server{Handler: http.HandlerFunc(p.serveRedirected), ReadHeaderTimeout: 10 * time.Second}
		p.serveOn(p.redirSrv, p.redir)
	}
	return p, nil
}

func (p *Proxy) serveOn(srv *http.Server, ln net.Listener) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = srv.Serve(ln) // http.ErrServerClosed after Close
	}()
}

// Addr is the proxy's "127.0.0.1:port", the registry host for clients.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// RedirectAddr is the second address blob GETs are redirected to, or "".
func (p *Proxy) RedirectAddr() string {
	if p.redir == nil {
		return ""
	}
	return p.redir.Addr().String()
}

// SetFaults replaces the faults applied from the next request on.
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// SetDown makes the registry look down (every request's connection is
// reset, on both addresses) or up again.
func (p *Proxy) SetDown(down bool) { p.down.Store(down) }

// ExpireTokens makes every token issued so far invalid.
func (p *Proxy) ExpireTokens() {
	p.mu.Lock()
	clear(p.tokens)
	p.mu.Unlock()
}

// Counters returns a snapshot of the counters.
func (p *Proxy) Counters() Counters {
	c := &p.c
	return Counters{
		Requests: c.requests.Load(), BlobRequests: c.blobRequests.Load(), Resets: c.resets.Load(),
		Status5xx: c.status5xx.Load(), TooMany: c.tooMany.Load(), Stalls: c.stalls.Load(),
		Truncated: c.truncated.Load(), Lengthened: c.lengthened.Load(), Flipped: c.flipped.Load(),
		BodyStalls: c.bodyStalls.Load(),
		Down:       c.down.Load(), Redirects: c.redirects.Load(), Redirected: c.redirected.Load(),
		Unauthorized: c.unauthorized.Load(), TokensIssued: c.tokensIssued.Load(),
		BodyBytes: c.bodyBytes.Load(), TokenRequests: c.tokenRequests.Load(),
	}
}

// Close stops both addresses and drops every connection.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	if p.redirSrv != nil {
		err = errors.Join(err, p.redirSrv.Close())
	}
	p.wg.Wait()
	p.transport.CloseIdleConnections()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Fault names what happens to one request.
type Fault int

// The faults, in the order Faults lists their probabilities.
const (
	None Fault = iota
	Reset
	ServerError // 503
	TooMany     // 429 with Retry-After
	Stall
	Truncate
	Lengthen
	Flip
	StallBody // status and headers at once, the body after StallFor
)

// Script makes the next blob GETs meet the given faults, one each in
// order, before the probabilities of Faults apply again: a test so sees
// every fault class it lists, whatever the random draws.
func (p *Proxy) Script(faults ...Fault) {
	p.mu.Lock()
	p.script = append(p.script, faults...)
	p.mu.Unlock()
}

// draw picks the fault of one request.
func (p *Proxy) draw(blob bool, method string) (Fault, Faults) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.faults
	if blob && method == http.MethodGet && len(p.script) > 0 {
		next := p.script[0]
		p.script = p.script[1:]
		return next, f
	}
	if !blob && !f.AllRequests {
		return None, f
	}
	x := p.rng.Float64()
	for i, pr := range []float64{f.Reset, f.Status5xx, f.TooMany, f.Stall, f.Truncate, f.Lengthen, f.Flip, f.StallBody} {
		if x < pr {
			return Fault(i + 1), f
		}
		x -= pr
	}
	return None, f
}

func (p *Proxy) intn(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.IntN(n)
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		p.serveToken(w, r)
		return
	}
	p.c.requests.Add(1)
	if p.down.Load() {
		p.c.down.Add(1)
		reset(w)
		return
	}
	if p.opts.Token != nil && strings.HasPrefix(r.URL.Path, "/v2/") && !p.authorized(r) {
		p.challenge(w, r)
		return
	}
	blob := isBlob(r)
	if blob {
		p.c.blobRequests.Add(1)
	}
	if blob && p.opts.Redirect && r.Method == http.MethodGet {
		p.c.redirects.Add(1)
		// The redirect target is the blob's path on the second address:
		// it serves without a token, as a signed storage URL would.
		w.Header().Set("Location", "http://"+p.RedirectAddr()+r.URL.RequestURI())
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	p.forward(w, r, blob)
}

// serveRedirected serves blob GETs on the redirect address.
func (p *Proxy) serveRedirected(w http.ResponseWriter, r *http.Request) {
	p.c.requests.Add(1)
	if p.down.Load() {
		p.c.down.Add(1)
		reset(w)
		return
	}
	if !isBlob(r) {
		http.NotFound(w, r)
		return
	}
	p.c.redirected.Add(1)
	p.c.blobRequests.Add(1)
	p.forward(w, r, true)
}

// forward applies the drawn fault and proxies the request upstream.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, blob bool) {
	f, cfg := p.draw(blob, r.Method)
	switch f {
	case Reset:
		p.c.resets.Add(1)
		reset(w)
		return
	case ServerError:
		p.c.status5xx.Add(1)
		http.Error(w, "injected fault", http.StatusServiceUnavailable)
		return
	case TooMany:
		p.c.tooMany.Add(1)
		w.Header().Set("Retry-After", fmt.Sprint(int(cfg.RetryAfter/time.Second)))
		http.Error(w, "injected rate limit", http.StatusTooManyRequests)
		return
	case Stall:
		p.c.stalls.Add(1)
		if !sleep(r.Context(), stallFor(cfg)) {
			return
		}
	}
	if p.opts.Latency > 0 && !sleep(r.Context(), p.opts.Latency) {
		return
	}
	resp, err := p.roundTrip(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if r.Method != http.MethodGet || resp.StatusCode/100 != 2 {
		f = None // truncation and corruption are of bodies only
	}
	if f == Flip && resp.StatusCode != http.StatusPartialContent {
		f = None
	}
	p.answer(w, resp, f, cfg)
}

// stallFor is how long a stall of cfg lasts.
func stallFor(cfg Faults) time.Duration {
	if cfg.StallFor <= 0 {
		return 2 * time.Second
	}
	return cfg.StallFor
}

// roundTrip sends r to the upstream registry.
func (p *Proxy) roundTrip(r *http.Request) (*http.Response, error) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.opts.Upstream+r.URL.RequestURI(), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range r.Header {
		if k != "Authorization" {
			out.Header[k] = v
		}
	}
	out.Host = r.Host
	// Redirects of the registry itself are passed on, not followed.
	return p.transport.RoundTrip(out)
}

// answer copies resp to w, damaged or delayed as f says.
func (p *Proxy) answer(w http.ResponseWriter, resp *http.Response, f Fault, cfg Faults) {
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	switch f {
	case Truncate, Lengthen, Flip:
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			reset(w)
			return
		}
		switch {
		case f == Truncate && len(body) > 0:
			p.c.truncated.Add(1)
			// Content-Length promises the whole body; half of it is
			// sent and the connection closed.
			w.WriteHeader(resp.StatusCode)
			_, _ = w.Write(body[:len(body)/2])
			if fl, ok := w.(http.Flusher); ok {
				fl.Flush()
			}
			abort()
		case f == Lengthen:
			p.c.lengthened.Add(1)
			body = append(body, "extra bytes past the range"...)
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		case f == Flip && len(body) > 0:
			p.c.flipped.Add(1)
			body[p.intn(len(body))] ^= 0xff
		}
		w.WriteHeader(resp.StatusCode)
		n, _ := w.Write(body)
		p.c.bodyBytes.Add(int64(n))
	default:
		w.WriteHeader(resp.StatusCode)
		if f == StallBody {
			p.c.bodyStalls.Add(1)
			// The client has its answer; the body keeps it waiting.
			if fl, ok := w.(http.Flusher); ok {
				fl.Flush()
			}
			if !sleep(resp.Request.Context(), stallFor(cfg)) {
				return
			}
		}
		n, _ := io.Copy(w, resp.Body)
		p.c.bodyBytes.Add(n)
	}
}

// isBlob reports whether r reads a blob (HEAD or GET /v2/<repo>/blobs/<digest>).
func isBlob(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		strings.HasPrefix(r.URL.Path, "/v2/") && strings.Contains(r.URL.Path, "/blobs/sha256:")
}

// reset closes the client's connection with a TCP RST, without an answer.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		abort()
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		abort()
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close sends RST, not FIN
	}
	conn.Close()
}

// abort makes net/http close the connection without finishing the answer.
func abort() { panic(http.ErrAbortHandler) }

// sleep waits d or until ctx ends, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
