package faultproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/internal/testregistry"
	"github.com/opencontainers/go-digest"
)

type fixture struct {
	p    *Proxy
	blob []byte
	dgst digest.Digest
	repo string
}

func start(t *testing.T, opts Options) *fixture {
	t.Helper()
	reg := testregistry.New(t, "test/repo")
	blob := testregistry.Noise(64<<10, t.Name())
	d := reg.AddBlob(blob)
	opts.Upstream, _, _ = strings.Cut(reg.Ref("x"), "/")
	p, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &fixture{p: p, blob: blob, dgst: d, repo: "test/repo"}
}

func (f *fixture) url() string {
	return fmt.Sprintf("http://%s/v2/%s/blobs/%s", f.p.Addr(), f.repo, f.dgst)
}

// client never reuses connections, so one request's fault cannot reach the next.
func client() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}}
}

func get(t *testing.T, url, rng string, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client().Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestNoFaultsPassesThrough(t *testing.T) {
	f := start(t, Options{Seed: 1})
	resp, body, err := get(t, f.url(), "bytes=100-199")
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, f.blob[100:200]) {
		t.Fatalf("got %v %v, %d bytes", resp, err, len(body))
	}
	if c := f.p.Counters(); c.BlobRequests != 1 || c.BodyBytes != 100 || c.Requests != 1 {
		t.Fatalf("counters %+v", c)
	}
}

func TestEachFault(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults Faults
		check  func(t *testing.T, f *fixture, resp *http.Response, body []byte, err error)
	}{
		{"reset", Faults{Reset: 1}, func(t *testing.T, f *fixture, resp *http.Response, body []byte, err error) {
			if !errors.Is(err, syscall.ECONNRESET) && (err == nil || !strings.Contains(err.Error(), "EOF")) {
				t.Fatalf("want a reset, got %v", err)
			}
			if f.p.Counters().Resets != 1 {
				t.Fatal("reset not counted")
			}
		}},
		{"5xx", Faults{Status5xx: 1}, func(t *testing.T, f *fixture, resp *http.Response, body []byte, err error) {
			if err != nil || resp.StatusCode != http.StatusServiceUnavailable || f.p.Counters().Status5xx != 1 {
				t.Fatalf("got %v %v", resp, err)
			}
		}},
		{"429", Faults{TooMany: 1, RetryAfter: 3 * time.Second}, func(t *testing.T, f *fixture, resp *http.Response, body []byte, err error) {
			if err != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "3" {
				t.Fatalf("got %v %v", resp, err)
			}
		}},
		{"stall", Faults{Stall: 1, StallFor: 300 * time.Millisecond}, func(t *testing.T, f *fixture, resp *http.Response, body []byte, err error) {
			if err != nil || !bytes.Equal(body, f.blob[0:10]) || f.p.Counters().Stalls != 1 {
				t.Fatalf("got %v %v", resp, err)
			}
		}},
		{"truncate", Faults{Truncate: 1}, func(t *testing.T, f *fixture, resp *http.Response, body []byte, err error) {
			if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != 5 || f.p.Counters().Truncated != 1 {
				t.Fatalf("want a body cut at 5 of 10 bytes, got %d bytes, %v", len(body), err)
			}
		}},
		{"lengthen", Faults{Lengthen: 1}, func(t *testing.T, f *fixture, resp *http.Response, body []byte, err error) {
			if err != nil || len(body) <= 10 || !bytes.Equal(body[:10], f.blob[:10]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 0-9/%d", len(f.blob)) {
				t.Fatalf("got %d bytes, %v, %v", len(body), resp, err)
			}
		}},
		{"flip", Faults{Flip: 1}, func(t *testing.T, f *fixture, resp *http.Response, body []byte, err error) {
			diff := 0
			for i := range body {
				if body[i] != f.blob[i] {
					diff++
				}
			}
			if err != nil || len(body) != 10 || diff != 1 || f.p.Counters().Flipped != 1 {
				t.Fatalf("got %d bytes, %d differ, %v", len(body), diff, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, Options{Seed: 1})
			f.p.SetFaults(tc.faults)
			resp, body, err := get(t, f.url(), "bytes=0-9")
			tc.check(t, f, resp, body, err)
		})
	}
}

// A stalled body comes after an answer: the client has status and
// headers while the body is held back.
func TestStallBodyAnswersFirst(t *testing.T) {
	f := start(t, Options{Seed: 1})
	f.p.SetFaults(Faults{StallBody: 1, StallFor: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.url(), nil)
	req.Header.Set("Range", "bytes=0-9")
	resp, err := client().Do(req)
	if err != nil {
		t.Fatalf("no answer before the stalled body: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || f.p.Counters().BodyStalls != 1 {
		t.Fatalf("got %v, %+v", resp.Status, f.p.Counters())
	}
	// The body does come, after StallFor.
	f.p.SetFaults(Faults{StallBody: 1, StallFor: 100 * time.Millisecond})
	resp2, body, err := get(t, f.url(), "bytes=0-9")
	if err != nil || resp2.StatusCode != http.StatusPartialContent || !bytes.Equal(body, f.blob[:10]) {
		t.Fatalf("got %v, %d bytes, %v", resp2, len(body), err)
	}
}

func TestFaultsSpareNonBlobsUnlessAll(t *testing.T) {
	f := start(t, Options{Seed: 1})
	f.p.SetFaults(Faults{Status5xx: 1})
	resp, _, err := get(t, "http://"+f.p.Addr()+"/v2/", "")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("ping got %v %v", resp, err)
	}
	f.p.SetFaults(Faults{Status5xx: 1, AllRequests: true})
	resp, _, err = get(t, "http://"+f.p.Addr()+"/v2/", "")
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("ping got %v %v", resp, err)
	}
}

func TestSeedRepeatsFaults(t *testing.T) {
	run := func() []int {
		f := start(t, Options{Seed: 42})
		f.p.SetFaults(Faults{Status5xx: 0.5})
		var codes []int
		for range 20 {
			resp, _, err := get(t, f.url(), "bytes=0-0")
			if err != nil {
				t.Fatal(err)
			}
			codes = append(codes, resp.StatusCode)
		}
		return codes
	}
	a, b := run(), run()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("same seed, different faults:\n%v\n%v", a, b)
	}
	if n := strings.Count(fmt.Sprint(a), "503"); n == 0 || n == 20 {
		t.Fatalf("a 0.5 probability gave %d of 20", n)
	}
}

func TestDown(t *testing.T) {
	f := start(t, Options{Seed: 1})
	f.p.SetDown(true)
	if _, _, err := get(t, f.url(), "bytes=0-9"); err == nil {
		t.Fatal("a down registry answered")
	}
	f.p.SetDown(false)
	if resp, _, err := get(t, f.url(), "bytes=0-9"); err != nil || resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("back up: %v %v", resp, err)
	}
	if c := f.p.Counters(); c.Down != 1 || c.Requests != 2 {
		t.Fatalf("counters %+v", c)
	}
}

func TestRedirect(t *testing.T) {
	f := start(t, Options{Seed: 1, Redirect: true})
	resp, body, err := get(t, f.url(), "bytes=10-19")
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, f.blob[10:20]) {
		t.Fatalf("got %v %v", resp, err)
	}
	if resp.Request.URL.Host != f.p.RedirectAddr() || f.p.RedirectAddr() == f.p.Addr() {
		t.Fatalf("served from %s, redirect address %s", resp.Request.URL.Host, f.p.RedirectAddr())
	}
	if c := f.p.Counters(); c.Redirects != 1 || c.Redirected != 1 {
		t.Fatalf("counters %+v", c)
	}
}

func TestTokenRequired(t *testing.T) {
	f := start(t, Options{Seed: 1, Token: &TokenOptions{Username: "u", Password: "pw", TTL: 200 * time.Millisecond}})
	resp, _, err := get(t, f.url(), "bytes=0-9")
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %v %v", resp, err)
	}
	ch := resp.Header.Get("WWW-Authenticate")
	if !strings.Contains(ch, `realm="http://`+f.p.Addr()+`/token"`) || !strings.Contains(ch, `scope="repository:test/repo:pull"`) {
		t.Fatalf("challenge %q", ch)
	}
	if resp, _, _ := get(t, "http://"+f.p.Addr()+"/token", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token without credentials: %v", resp.Status)
	}
	resp, body, err := get(t, "http://u:pw@"+f.p.Addr()+"/token?service=faultproxy", "")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %v %v", resp, err)
	}
	var tok struct {
		Token     string `json:"token"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.Token == "" || tok.ExpiresIn != 1 {
		t.Fatalf("token answer %s: %v", body, err)
	}
	resp, body, err = get(t, f.url(), "bytes=0-9", "Authorization", "Bearer "+tok.Token)
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, f.blob[:10]) {
		t.Fatalf("with the token: %v %v", resp, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _, err = get(t, f.url(), "bytes=0-9", "Authorization", "Bearer "+tok.Token)
		if err == nil && resp.StatusCode == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token never expired: %v %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("expired token challenge %q", resp.Header.Get("WWW-Authenticate"))
	}
	if c := f.p.Counters(); c.TokensIssued != 1 || c.Unauthorized < 2 {
		t.Fatalf("counters %+v", c)
	}
}

func TestExpireTokens(t *testing.T) {
	f := start(t, Options{Seed: 1, Token: &TokenOptions{TTL: time.Hour}})
	_, body, err := get(t, "http://"+f.p.Addr()+"/token", "")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	_ = json.Unmarshal(body, &tok)
	if resp, _, _ := get(t, f.url(), "bytes=0-0", "Authorization", "Bearer "+tok.Token); resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("fresh token: %v", resp.Status)
	}
	f.p.ExpireTokens()
	if resp, _, _ := get(t, f.url(), "bytes=0-0", "Authorization", "Bearer "+tok.Token); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired token: %v", resp.Status)
	}
}

func TestScriptComesFirst(t *testing.T) {
	f := start(t, Options{Seed: 1})
	f.p.Script(ServerError, TooMany)
	var codes []int
	for range 3 {
		resp, _, err := get(t, f.url(), "bytes=0-0")
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.StatusCode)
	}
	if fmt.Sprint(codes) != "[503 429 206]" {
		t.Fatalf("statuses %v, want the script then none", codes)
	}
}

func TestSetCredentials(t *testing.T) {
	f := start(t, Options{Seed: 1, Token: &TokenOptions{Username: "u", Password: "old"}})
	f.p.SetCredentials("u", "new")
	if resp, _, _ := get(t, "http://u:old@"+f.p.Addr()+"/token", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("old password: %s", resp.Status)
	}
	if resp, _, _ := get(t, "http://u:new@"+f.p.Addr()+"/token", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("new password: %s", resp.Status)
	}
}
