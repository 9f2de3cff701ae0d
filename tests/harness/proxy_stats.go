package harness

import (
	"github.com/opencontainers/go-digest"
)

// BlobBytes returns the response body bytes served for dgst since the
// start or the last Reset.
func (p *Proxy) BlobBytes(dgst digest.Digest) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.stats[dgst]; s != nil {
		return s.bytes
	}
	return 0
}

// BlobRequests returns the number of GET requests for dgst, ranged or not.
func (p *Proxy) BlobRequests(dgst digest.Digest) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.stats[dgst]; s != nil {
		return s.requests
	}
	return 0
}

// FullBlobFetches returns the number of GET requests for dgst without a
// Range header: whole downloads.
func (p *Proxy) FullBlobFetches(dgst digest.Digest) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.stats[dgst]; s != nil {
		return s.full
	}
	return 0
}

// TotalBlobBytes returns the body bytes served for all blobs.
func (p *Proxy) TotalBlobBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var total int64
	for _, s := range p.stats {
		total += s.bytes
	}
	return total
}

// TotalBlobRequests returns the number of GET requests for all blobs.
func (p *Proxy) TotalBlobRequests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	total := 0
	for _, s := range p.stats {
		total += s.requests
	}
	return total
}

// BlobHeads returns the number of HEAD requests for dgst (size lookups).
func (p *Proxy) BlobHeads(dgst digest.Digest) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.stats[dgst]; s != nil {
		return s.heads
	}
	return 0
}

// TotalBlobHeads returns the number of HEAD requests for all blobs (size
// lookups).
func (p *Proxy) TotalBlobHeads() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	total := 0
	for _, s := range p.stats {
		total += s.heads
	}
	return total
}

// Reset zeroes every counter. Corruption and latency stay as set: a test
// typically resets after the pull and then counts what a container reads.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.stats)
}

// Corrupt makes the proxy flip every bit of the byte at offset of blob dgst
// whenever that byte is served, in a full or a ranged response.
func (p *Proxy) Corrupt(dgst digest.Digest, offset int64) {
	p.setCorrupt(dgst, offset, -1)
}

// CorruptOnce is Corrupt for the next time that byte is served only, to
// test that a reader recovers by fetching again.
func (p *Proxy) CorruptOnce(dgst digest.Digest, offset int64) {
	p.setCorrupt(dgst, offset, 1)
}

// ClearFaults removes every corruption and the latency.
func (p *Proxy) ClearFaults() {
	p.SetLatency(0)
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.corrupt)
}

func (p *Proxy) setCorrupt(dgst digest.Digest, offset int64, times int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.corrupt[dgst] == nil {
		p.corrupt[dgst] = map[int64]int{}
	}
	p.corrupt[dgst][offset] = times
}

func (p *Proxy) countHead(dgst digest.Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blobStats(dgst).heads++
}

func (p *Proxy) countRequest(dgst digest.Digest, full bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.blobStats(dgst)
	s.requests++
	if full {
		s.full++
	}
}

// blobStats returns the counters of dgst; p.mu must be held.
func (p *Proxy) blobStats(dgst digest.Digest) *proxyBlobStats {
	s := p.stats[dgst]
	if s == nil {
		s = &proxyBlobStats{}
		p.stats[dgst] = s
	}
	return s
}

// hasCorruption reports whether any byte of dgst is set to be corrupted.
func (p *Proxy) hasCorruption(dgst digest.Digest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.corrupt[dgst]) > 0
}

// serve accounts for buf, the bytes of dgst at blob offset off (off < 0:
// not blob data, e.g. multipart framing), and corrupts them in place as set.
func (p *Proxy) serve(dgst digest.Digest, off int64, buf []byte, count bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if count {
		p.blobStats(dgst).bytes += int64(len(buf))
	}
	if off < 0 {
		return
	}
	for at, left := range p.corrupt[dgst] {
		if at < off || at >= off+int64(len(buf)) {
			continue
		}
		buf[at-off] ^= 0xff
		if left > 0 {
			if left == 1 {
				delete(p.corrupt[dgst], at)
			} else {
				p.corrupt[dgst][at] = left - 1
			}
		}
	}
}
