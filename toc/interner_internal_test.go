package toc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
)

// TestInternerSharesAndIsBounded guards the memory the interner saves and
// the memory it may cost: equal strings come back as one copy, and it keeps
// at most maxInterned of them however many distinct values a TOC holds.
func TestInternerSharesAndIsBounded(t *testing.T) {
	var in interner
	a := in.intern(strings.Clone("2024-01-02T03:04:05Z"))
	b := in.intern(strings.Clone("2024-01-02T03:04:05Z"))
	if unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatal("two equal strings were not shared")
	}
	for i := 0; len(in.seen) < maxInterned; i++ {
		in.intern(strconv.Itoa(i))
	}
	extra := in.intern(strings.Clone("one more"))
	if len(in.seen) != maxInterned || extra != "one more" {
		t.Fatalf("interner holds %d strings after one past its bound %d (got %q)", len(in.seen), maxInterned, extra)
	}
}

// cancelling is a visitor that cancels its context at the first entry.
type cancelling struct {
	cancel  context.CancelFunc
	entries int
}

func (c *cancelling) version(int) error { return nil }

func (c *cancelling) entry(int, *estargz.TOCEntry) error {
	c.entries++
	c.cancel()
	return nil
}

func tocOf(entries int) string {
	var b strings.Builder
	b.WriteString(`{"version":1,"entries":[`)
	for i := range entries {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"f%d","type":"reg"}`, i)
	}
	b.WriteString(`]}`)
	return b.String()
}

// TestDecodeStopsWhenCancelled guards the decoder's context checks: a
// context cancelled before the first entry stops even a one-entry TOC, and
// one cancelled while a big TOC decodes stops it within ctxCheckInterval
// entries, with the context's error.
func TestDecodeStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := decodeTOC(ctx, strings.NewReader(tocOf(1)), 10, &cancelling{cancel: func() {}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("one-entry TOC with a cancelled context: %v, want context.Canceled", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	v := &cancelling{cancel: cancel}
	err := decodeTOC(ctx, strings.NewReader(tocOf(3*ctxCheckInterval)), 4*ctxCheckInterval, v)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("TOC cancelled at its first entry: %v, want context.Canceled", err)
	}
	if v.entries > ctxCheckInterval {
		t.Fatalf("decoded %d entries after the cancel, want at most %d", v.entries, ctxCheckInterval)
	}
}

// TestDecodeVerifiedOrder guards which error bytes that fail several ways
// get: bytes that are not the TOC the image names are refused as such
// (digest mismatch) before anything their decoding found, and a cancelled
// load reports the cancel, not what it did not finish checking.
func TestDecodeVerifiedOrder(t *testing.T) {
	other := digest.FromString("some other TOC")
	var refused *RefusedError
	_, err := decodeVerified(context.Background(), strings.NewReader("not JSON at all"), other, 1<<20, 10, &cancelling{cancel: func() {}})
	if !errors.As(err, &refused) || refused.Reason != ReasonTOCDigestMismatch {
		t.Fatalf("malformed bytes of another digest: %v, want a %s refusal", err, ReasonTOCDigestMismatch)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = decodeVerified(ctx, strings.NewReader(tocOf(3*ctxCheckInterval)), other, 1<<30, 4*ctxCheckInterval, &cancelling{cancel: cancel})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a load cancelled half-way through bytes of another digest: %v, want context.Canceled", err)
	}
}
