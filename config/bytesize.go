package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
)

// ByteSize is a number of bytes. In a document it is either a TOML integer
// (bytes) or a string of decimal digits followed by an optional unit: B,
// KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024),
// spelled exactly so, with an optional space ("64MiB", "100 MB", "4096").
//
// The units are parsed here rather than with docker/go-units, which reads
// "MB" and "MiB" as the same multiple and so would make "100MB" mean
// 100 MiB.
type ByteSize int64

// Multiples of a byte, as accepted by ParseByteSize.
const (
	KB ByteSize = 1000
	MB          = 1000 * KB
	GB          = 1000 * MB
	TB          = 1000 * GB

	KiB ByteSize = 1 << 10
	MiB          = 1 << 20
	GiB          = 1 << 30
	TiB          = 1 << 40
)

// sizeUnits lists the accepted units; binary units come first so that
// String prefers them.
var sizeUnits = []struct {
	name string
	size ByteSize
}{
	{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB},
	{"TB", TB}, {"GB", GB}, {"MB", MB}, {"KB", KB},
	{"B", 1},
}

// ParseByteSize parses digits followed by an optional unit, as a size is
// written in a string value of a document.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	digits := strings.TrimRightFunc(s, func(r rune) bool { return unicode.IsLetter(r) || r == ' ' })
	unit := strings.TrimSpace(s[len(digits):])
	n, err := strconv.ParseInt(digits, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%q is too large: at most %d bytes", s, int64(math.MaxInt64))
	}
	if err != nil || n < 0 || strings.HasPrefix(digits, "+") {
		return 0, fmt.Errorf("%q is not a size: want %s", s, sizeWant)
	}
	mult := ByteSize(1)
	if unit != "" {
		mult = 0
		for _, u := range sizeUnits {
			if u.name == unit {
				mult = u.size
				break
			}
		}
		if mult == 0 {
			return 0, fmt.Errorf("%q has an unknown unit %q: want one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB", s, unit)
		}
	}
	if ByteSize(n) > ByteSize(math.MaxInt64)/mult {
		return 0, fmt.Errorf("%q is too large: at most %d bytes", s, int64(math.MaxInt64))
	}
	return ByteSize(n) * mult, nil
}

// sizeWant says what a size may look like, for messages.
const sizeWant = `an integer (bytes) or a string with a unit such as "64MiB" or "100MB"`

// UnmarshalText implements encoding.TextUnmarshaler. go-toml calls it for
// string values only; integers are stored as bytes directly.
func (b *ByteSize) UnmarshalText(text []byte) error {
	n, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = n
	return nil
}

// MarshalText implements encoding.TextMarshaler, so that a marshalled Config
// parses back to the same value.
func (b ByteSize) MarshalText() ([]byte, error) {
	return []byte(b.String()), nil
}

// String returns the size in the largest unit that divides it exactly
// ("64MiB", "100MB"), or in bytes.
func (b ByteSize) String() string {
	if b > 0 {
		for _, u := range sizeUnits {
			if b%u.size == 0 {
				return strconv.FormatInt(int64(b/u.size), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(b), 10)
}
