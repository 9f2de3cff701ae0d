package remote

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/internal/faultproxy"
	"github.com/lazyfs/lazyfs/internal/testregistry"
)

func startTransportProxy(t *testing.T) (*faultproxy.Proxy, string) {
	t.Helper()
	reg := testregistry.New(t, "test/repo")
	d := reg.AddBlob(testregistry.Noise(4096, t.Name()))
	up, _, _ := strings.Cut(reg.Ref("x"), "/")
	p, err := faultproxy.Start(faultproxy.Options{Upstream: up, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, "http://" + p.Addr() + "/v2/test/repo/blobs/" + d.String()
}

func TestRetryTransportRetriesIdempotentRequests(t *testing.T) {
	p, url := startTransportProxy(t)
	p.Script(faultproxy.Reset, faultproxy.ServerError, faultproxy.TooMany)
	c := &http.Client{Transport: NewRetryTransport(&http.Transport{DisableKeepAlives: true})}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) != 4096 {
		t.Fatalf("got %s, %d bytes", resp.Status, len(body))
	}
	if got := p.Counters().BlobRequests; got != 4 {
		t.Fatalf("%d requests, want 4 (3 faults, then the answer)", got)
	}
}

func TestRetryTransportGivesUp(t *testing.T) {
	p, url := startTransportProxy(t)
	p.SetFaults(faultproxy.Faults{Status5xx: 1})
	tr := NewRetryTransport(&http.Transport{DisableKeepAlives: true})
	tr.Attempts = 3
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || p.Counters().BlobRequests != 3 {
		t.Fatalf("got %s after %d requests, want the last 503 after 3", resp.Status, p.Counters().BlobRequests)
	}
	// A request with a body is never sent twice.
	p2, url2 := startTransportProxy(t)
	p2.SetFaults(faultproxy.Faults{Status5xx: 1, AllRequests: true})
	resp, err = (&http.Client{Transport: tr}).Post(url2, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := p2.Counters().Requests; n != 1 {
		t.Fatalf("POST sent %d times", n)
	}
	// The ctx ends the waits.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	tr.Attempts, tr.Backoff.BackoffMin, tr.Backoff.BackoffMax = 100, time.Second, time.Second
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if _, err := (&http.Client{Transport: tr}).Do(req); err == nil {
		t.Fatal("no error when the ctx ended")
	}
}

func TestConfigureHostsRetryWraps(t *testing.T) {
	hosts, err := ConfigureHosts(context.Background(), HostsOptions{Retry: true})("127.0.0.1:5000")
	if err != nil || len(hosts) == 0 {
		t.Fatal(hosts, err)
	}
	if _, ok := hosts[0].Client.Transport.(*RetryTransport); !ok {
		t.Fatalf("transport %T, want a RetryTransport", hosts[0].Client.Transport)
	}
	hosts, _ = ConfigureHosts(context.Background(), HostsOptions{})("127.0.0.1:5000")
	if _, ok := hosts[0].Client.Transport.(*RetryTransport); ok {
		t.Fatal("wrapped without Retry")
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRetryTransportUsesItsBase guards NewRetryTransport's base: the one
// given carries every request (only nil means http.DefaultTransport), and
// a GET whose body is http.NoBody has no body, so it is retried, as is a
// HEAD, never a POST.
func TestRetryTransportUsesItsBase(t *testing.T) {
	calls := 0
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		calls++
		code := http.StatusOK
		if calls == 1 {
			code = http.StatusServiceUnavailable
		}
		return &http.Response{StatusCode: code, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: r}, nil
	})
	tr := NewRetryTransport(base)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://registry.invalid/v2/", http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK || calls != 2 {
		t.Fatalf("RoundTrip = %v, %v after %d calls of the base; want 200 after 2", resp, err, calls)
	}
	if NewRetryTransport(nil).Base != http.DefaultTransport {
		t.Error("NewRetryTransport(nil) does not use http.DefaultTransport")
	}
	// HEAD is retried like GET; POST is not idempotent and goes once.
	for method, want := range map[string]int{http.MethodHead: 2, http.MethodPost: 1} {
		calls = 0
		req, _ := http.NewRequestWithContext(context.Background(), method, "http://registry.invalid/v2/", nil)
		if _, err := tr.RoundTrip(req); err != nil || calls != want {
			t.Errorf("%s: %v after %d calls of the base, want %d", method, err, calls, want)
		}
	}
}
