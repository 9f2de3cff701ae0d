package toc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// ctxCheckInterval is how many entries are decoded between checks of ctx:
// often enough to stop a huge TOC promptly, rarely enough to cost nothing.
const ctxCheckInterval = 4096

// decodeTOC decodes TOC JSON into an estargz.JTOC. It streams the entries
// array so that it can stop at maxEntries: the JSON "{}," costs 3 bytes but
// decodes into a TOCEntry of a few hundred, so MaxSize alone would not bound
// the worker's memory.
//
// It accepts what json.Unmarshal into a JTOC accepts (keys match
// case-insensitively, unknown keys are ignored) except for a repeated
// top-level key, which is refused rather than resolved last-wins.
func decodeTOC(ctx context.Context, raw io.Reader, maxEntries int) (*estargz.JTOC, error) {
	malformed := func(err error) error {
		return refuse(ReasonMalformed, "", fmt.Errorf("invalid TOC JSON: %w", err))
	}
	dec := json.NewDecoder(raw)
	if err := expectDelim(dec, '{'); err != nil {
		return nil, malformed(err)
	}
	jtoc := new(estargz.JTOC)
	var seenVersion, seenEntries bool
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed(err)
		}
		key, _ := tok.(string) // object keys are always strings
		switch {
		case strings.EqualFold(key, "version"):
			if seenVersion {
				return nil, malformed(errors.New(`repeated key "version"`))
			}
			seenVersion = true
			if err := dec.Decode(&jtoc.Version); err != nil {
				return nil, malformed(err)
			}
		case strings.EqualFold(key, "entries"):
			if seenEntries {
				return nil, malformed(errors.New(`repeated key "entries"`))
			}
			seenEntries = true
			entries, err := decodeEntries(ctx, dec, maxEntries)
			if err != nil {
				return nil, err
			}
			jtoc.Entries = entries
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, malformed(err)
			}
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, malformed(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformed(errors.New("trailing data after the TOC object"))
	}
	return jtoc, nil
}

// decodeEntries decodes the value of "entries": null or an array of entries.
func decodeEntries(ctx context.Context, dec *json.Decoder, maxEntries int) ([]*estargz.TOCEntry, error) {
	malformed := func(err error) error {
		return refuse(ReasonMalformed, "", fmt.Errorf("invalid TOC entries: %w", err))
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, malformed(err)
	}
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('[') {
		return nil, malformed(fmt.Errorf("entries is %v, not an array", tok))
	}
	var entries []*estargz.TOCEntry
	var in interner
	for dec.More() {
		if len(entries) == maxEntries {
			return nil, refuse(ReasonTooManyEntries, "", fmt.Errorf("TOC has more than %d entries", maxEntries))
		}
		if len(entries)%ctxCheckInterval == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		e := new(estargz.TOCEntry)
		if err := dec.Decode(e); err != nil {
			return nil, malformed(fmt.Errorf("entry %d: %w", len(entries), err))
		}
		in.shrink(e)
		entries = append(entries, e)
	}
	if err := expectDelim(dec, ']'); err != nil {
		return nil, malformed(err)
	}
	return entries, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("found %v where %v was expected", tok, want)
	}
	return nil
}

// maxInterned bounds the distinct strings an interner keeps: the values
// worth sharing (timestamps of a reproducible build, owner names, entry
// types) repeat; a TOC of distinct values only costs the map this much.
const maxInterned = 4096

// interner shares the strings that repeat across the entries of a TOC, so
// that a TOC of 300,000 entries holds one copy of its build timestamp, not
// 300,000: the decoded TOC is most of a worker's memory while a layer
// loads.
type interner struct {
	seen map[string]string
}

func (in *interner) intern(s string) string {
	if s == "" {
		return s
	}
	if v, ok := in.seen[s]; ok {
		return v
	}
	if in.seen == nil {
		in.seen = make(map[string]string)
	}
	if len(in.seen) < maxInterned {
		in.seen[s] = s
	}
	return s
}

// shrink shares e's repeated strings: with the other entries' (type,
// timestamp, owner names) and, within e, a chunk digest equal to the
// file's digest (a file of one chunk).
func (in *interner) shrink(e *estargz.TOCEntry) {
	e.Type = in.intern(e.Type)
	e.ModTime3339 = in.intern(e.ModTime3339)
	e.Uname = in.intern(e.Uname)
	e.Gname = in.intern(e.Gname)
	if e.ChunkDigest == e.Digest {
		e.ChunkDigest = e.Digest
	}
}
