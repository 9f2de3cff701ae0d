package config

import (
	"fmt"
	"time"
)

// Duration is a time.Duration written in a document as a Go duration string
// ("10s", "500ms", "1m30s"). go-toml has no duration type of its own: a
// plain time.Duration field would take an integer as nanoseconds and refuse
// strings.
type Duration time.Duration

// durationWant says what a duration may look like, for messages.
const durationWant = `a duration string such as "10s", "500ms" or "1m30s"`

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("%q is not a duration: want %s", text, durationWant)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// String formats d like time.Duration does.
func (d Duration) String() string {
	return time.Duration(d).String()
}
