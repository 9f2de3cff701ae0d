package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// maxProxyMultipart bounds a multi-range response the proxy buffers to
// corrupt it; test layers are far smaller.
const maxProxyMultipart = 256 << 20

// modifyResponse wraps the body of a successful blob GET so that its bytes
// are counted and corrupted as set, at their offsets in the blob.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	req := resp.Request
	dgst, ok := blobPathDigest(req.URL.Path)
	if !ok || req.Method != http.MethodGet {
		return nil
	}
	switch resp.StatusCode {
	case http.StatusOK:
		resp.Body = &proxyBlobBody{ReadCloser: resp.Body, p: p, ctx: req.Context(), dgst: dgst, off: 0}
	case http.StatusPartialContent:
		mediaType, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if mediaType == "multipart/byteranges" {
			if p.hasCorruption(dgst) {
				return p.rewriteMultipart(resp, dgst, params["boundary"])
			}
			resp.Body = &proxyBlobBody{ReadCloser: resp.Body, p: p, ctx: req.Context(), dgst: dgst, off: -1}
			return nil
		}
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil {
			return fmt.Errorf("blob %s: %w", dgst, err)
		}
		resp.Body = &proxyBlobBody{ReadCloser: resp.Body, p: p, ctx: req.Context(), dgst: dgst, off: start}
	}
	return nil
}

// rewriteMultipart corrupts the parts of a multi-range response. The parts
// are re-encoded with the same boundary and headers, so a client sees the
// same ranges, with a Content-Length that matches the new encoding.
func (p *Proxy) rewriteMultipart(resp *http.Response, dgst digest.Digest, boundary string) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxProxyMultipart+1))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("blob %s: failed to read multi-range response: %w", dgst, err)
	}
	if len(data) > maxProxyMultipart {
		return fmt.Errorf("blob %s: multi-range response over %d bytes", dgst, maxProxyMultipart)
	}
	var out bytes.Buffer
	mw := multipart.NewWriter(&out)
	if err := mw.SetBoundary(boundary); err != nil {
		return fmt.Errorf("blob %s: %w", dgst, err)
	}
	mr := multipart.NewReader(bytes.NewReader(data), boundary)
	for {
		part, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("blob %s: bad multi-range response: %w", dgst, err)
		}
		start, err := contentRangeStart(part.Header.Get("Content-Range"))
		if err != nil {
			return fmt.Errorf("blob %s: %w", dgst, err)
		}
		body, err := io.ReadAll(part)
		if err != nil {
			return fmt.Errorf("blob %s: bad multi-range response: %w", dgst, err)
		}
		p.serve(dgst, start, body, false)
		w, err := mw.CreatePart(part.Header)
		if err != nil {
			return err
		}
		if _, err := w.Write(body); err != nil {
			return err
		}
	}
	if err := mw.Close(); err != nil {
		return err
	}
	resp.ContentLength = int64(out.Len())
	resp.Header.Set("Content-Length", strconv.Itoa(out.Len()))
	resp.Body = &proxyBlobBody{ReadCloser: io.NopCloser(&out), p: p, ctx: resp.Request.Context(), dgst: dgst, off: -1}
	return nil
}

// contentRangeStart returns the first byte of "bytes <first>-<last>/<size>".
func contentRangeStart(v string) (int64, error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	first, _, ok2 := strings.Cut(rest, "-")
	if !ok || !ok2 {
		return 0, fmt.Errorf("unexpected Content-Range %q", v)
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return 0, fmt.Errorf("unexpected Content-Range %q", v)
	}
	return start, nil
}

// proxyBlobBody counts what the client is sent and corrupts bytes at their
// blob offsets; off < 0 means the stream is not plain blob data (it is
// counted, never corrupted).
type proxyBlobBody struct {
	io.ReadCloser
	p    *Proxy
	ctx  context.Context // the request's: pacing ends with it
	dgst digest.Digest
	off  int64
}

func (b *proxyBlobBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	if n > 0 {
		b.p.pace(b.ctx, n)
		b.p.serve(b.dgst, b.off, buf[:n], true)
		if b.off >= 0 {
			b.off += int64(n)
		}
	}
	return n, err
}
