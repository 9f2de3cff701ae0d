package toc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// ctxCheckInterval is how many entries are decoded between checks of ctx:
// often enough to stop a huge TOC promptly, rarely enough to cost nothing.
const ctxCheckInterval = 4096

// visitor receives what decodeTOC reads, in the order the JSON holds it.
type visitor interface {
	// version receives the value of "version".
	version(v int) error
	// entry receives the i-th entry. e is reused for the next entry once
	// entry returns: keep its fields (strings, the xattr map), never e.
	entry(i int, e *estargz.TOCEntry) error
}

// entryOptions decode an entry as encoding/json would into a TOCEntry:
// object keys match field names case-insensitively (only case is folded)
// and unknown keys are ignored. Unlike encoding/json, the decoder refuses
// a key repeated in an object, also in another case, and invalid UTF-8: a
// TOC that would read differently to a last-wins or a replacing parser is
// not served.
var entryOptions = json.JoinOptions(
	json.MatchCaseInsensitiveNames(true),
	jsonv1.MatchCaseSensitiveDelimiter(true),
)

// decodeTOC decodes TOC JSON and hands its version and each entry to visit
// as they are read: the entries are never held together, so a TOC costs
// what its visitor keeps of it. It stops at maxEntries: the JSON "{},"
// costs 3 bytes but decodes into a TOCEntry of a few hundred, so MaxSize
// alone would not bound the worker's memory. An error of visit stops it
// and is returned as is.
//
// It accepts what json.Unmarshal into a JTOC accepts (keys match
// case-insensitively, unknown keys are ignored) except for a repeated key
// (top-level or in an entry) and invalid UTF-8, which are refused. The
// decoder (github.com/go-json-experiment/json, what became Go's
// encoding/json/v2) reads each value once: encoding/json's stream decoder
// scans every entry twice, which made it the largest cost of a pull.
func decodeTOC(ctx context.Context, raw io.Reader, maxEntries int, visit visitor) error {
	malformed := func(err error) error {
		return refuse(ReasonMalformed, "", fmt.Errorf("invalid TOC JSON: %w", err))
	}
	dec := jsontext.NewDecoder(raw)
	if err := expectKind(dec, '{'); err != nil {
		return malformed(err)
	}
	var seenVersion, seenEntries bool
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return malformed(err)
		}
		key := tok.String() // object keys are always strings
		switch {
		case strings.EqualFold(key, "version"):
			if seenVersion {
				return malformed(errors.New(`repeated key "version"`))
			}
			seenVersion = true
			var v int
			if err := json.UnmarshalDecode(dec, &v); err != nil {
				return malformed(err)
			}
			if err := visit.version(v); err != nil {
				return err
			}
		case strings.EqualFold(key, "entries"):
			if seenEntries {
				return malformed(errors.New(`repeated key "entries"`))
			}
			seenEntries = true
			if err := decodeEntries(ctx, dec, maxEntries, visit); err != nil {
				return err
			}
		default:
			if err := dec.SkipValue(); err != nil {
				return malformed(err)
			}
		}
	}
	if err := expectKind(dec, '}'); err != nil {
		return malformed(err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return malformed(errors.New("trailing data after the TOC object"))
	}
	if !seenVersion {
		// A TOC without "version" is version 0, which Validate refuses.
		return visit.version(0)
	}
	return nil
}

// decodeEntries decodes the value of "entries": null or an array of
// entries, each into the same TOCEntry.
func decodeEntries(ctx context.Context, dec *jsontext.Decoder, maxEntries int, visit visitor) error {
	malformed := func(err error) error {
		return refuse(ReasonMalformed, "", fmt.Errorf("invalid TOC entries: %w", err))
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return malformed(err)
	}
	switch tok.Kind() {
	case 'n':
		return nil
	case '[':
	default:
		return malformed(fmt.Errorf("entries is %v, not an array", tok))
	}
	var in interner
	e := new(estargz.TOCEntry)
	n := 0
	for ; dec.PeekKind() != ']'; n++ {
		if n == maxEntries {
			return refuse(ReasonTooManyEntries, "", fmt.Errorf("TOC has more than %d entries", maxEntries))
		}
		if n%ctxCheckInterval == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		// Decoding into a struct leaves the fields the JSON omits as they
		// were: start from a zero entry each time.
		*e = estargz.TOCEntry{}
		if err := json.UnmarshalDecode(dec, e, entryOptions); err != nil {
			return malformed(fmt.Errorf("entry %d: %w", n, err))
		}
		in.shrink(e)
		if err := visit.entry(n, e); err != nil {
			return err
		}
	}
	if err := expectKind(dec, ']'); err != nil {
		return malformed(err)
	}
	return nil
}

// expectKind reads the next token, which must be the delimiter want.
func expectKind(dec *jsontext.Decoder, want jsontext.Kind) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != want {
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
