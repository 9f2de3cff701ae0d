package faultproxy

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// serveToken is the token server: GET /token?service=…&scope=… answers a
// bearer token, checking basic auth when a username is configured.
func (p *Proxy) serveToken(w http.ResponseWriter, r *http.Request) {
	p.c.tokenRequests.Add(1)
	t := p.opts.Token
	if t == nil {
		http.NotFound(w, r)
		return
	}
	p.mu.Lock()
	user, pass := p.user, p.pass
	p.mu.Unlock()
	if user != "" {
		u, pw, ok := r.BasicAuth()
		if !ok || u != user || pw != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="faultproxy"`)
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	now := time.Now()
	p.mu.Lock()
	p.tokens[tok] = now.Add(t.TTL)
	p.mu.Unlock()
	p.c.tokensIssued.Add(1)
	announce := t.TTL
	if t.AnnounceTTL > 0 {
		announce = t.AnnounceTTL
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":      tok,
		"expires_in": max(1, int(announce/time.Second)),
		"issued_at":  now.UTC().Format(time.RFC3339),
	})
}

// SetCredentials changes the username and password the token server
// requires from now on (tokens already issued stay valid until they
// expire or ExpireTokens).
func (p *Proxy) SetCredentials(user, pass string) {
	p.mu.Lock()
	p.user, p.pass = user, pass
	p.mu.Unlock()
}

// authorized reports whether r carries a token that is still valid.
func (p *Proxy) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	p.mu.Lock()
	exp, ok := p.tokens[tok]
	p.mu.Unlock()
	return ok && time.Now().Before(exp)
}

// challenge answers 401 with a bearer challenge naming the token server;
// a request that carried a token that is no longer valid is told
// error="invalid_token", as distribution's token auth does.
func (p *Proxy) challenge(w http.ResponseWriter, r *http.Request) {
	p.c.unauthorized.Add(1)
	c := fmt.Sprintf(`Bearer realm="http://%s/token",service="faultproxy"`, p.Addr())
	if repo, ok := repository(r.URL.Path); ok {
		c += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
	}
	if r.Header.Get("Authorization") != "" {
		c += `,error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", c)
	http.Error(w, "authentication required", http.StatusUnauthorized)
}

// repository returns the repository of a /v2/<repo>/{blobs,manifests}/… path.
func repository(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", false
	}
	for _, kind := range []string{"/blobs/", "/manifests/", "/tags/"} {
		if i := strings.LastIndex(rest, kind); i > 0 {
			return rest[:i], true
		}
	}
	return "", false
}
