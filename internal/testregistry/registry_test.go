package testregistry

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

func blobURL(r *Registry, l *Layer) string {
	return fmt.Sprintf("http://%s/v2/%s/blobs/%s", r.addr, r.repo, l.Digest)
}

func TestServesLayerWithHEADAndRange(t *testing.T) {
	r := New(t, "lazyfs/test")
	l := BuildLayer(t, "one")
	r.AddBlob(l.Blob)

	for _, tc := range []struct {
		name, method, rng string
		status            int
		body              []byte
	}{
		{"ping", http.MethodGet, "", http.StatusOK, nil},
		{"head", http.MethodHead, "", http.StatusOK, nil},
		{"range", http.MethodGet, "bytes=10-19", http.StatusPartialContent, l.Blob[10:20]},
		{"unknown blob", http.MethodGet, "", http.StatusNotFound, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := blobURL(r, l)
			switch tc.name {
			case "ping":
				url = "http://" + r.addr + "/v2/"
			case "unknown blob":
				url = fmt.Sprintf("http://%s/v2/%s/blobs/sha256:%064d", r.addr, r.repo, 0)
			}
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, url, nil)
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.name == "head" && resp.ContentLength != int64(len(l.Blob)) {
				t.Errorf("HEAD length %d, want %d", resp.ContentLength, len(l.Blob))
			}
			if tc.body != nil && !bytes.Equal(body, tc.body) {
				t.Errorf("body %x, want %x", body, tc.body)
			}
		})
	}
	if got := r.RangedGets(); got != 1 {
		t.Errorf("RangedGets = %d, want 1", got)
	}
}

func TestHoldStopStart(t *testing.T) {
	r := New(t, "lazyfs/test")
	l := BuildLayer(t, "two")
	r.AddBlob(l.Blob)
	get := func() error {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, blobURL(r, l), nil)
		req.Header.Set("Range", "bytes=0-9")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}

	r.Hold()
	done := make(chan error, 1)
	go func() { done <- get() }()
	select {
	case <-r.Stalled():
	case <-time.After(5 * time.Second):
		t.Fatal("held request not reported on Stalled")
	}
	select {
	case <-done:
		t.Fatal("held request answered before Release")
	default:
	}
	r.Release()
	if err := <-done; err != nil {
		t.Fatalf("released request: %v", err)
	}

	r.Stop()
	if err := get(); err == nil {
		t.Fatal("request to a stopped registry succeeded")
	}
	r.Start()
	if err := get(); err != nil {
		t.Fatalf("request after Start: %v", err)
	}
}
