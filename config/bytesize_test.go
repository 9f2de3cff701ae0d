package config_test

import (
	"testing"

	"github.com/lazyfs/lazyfs/config"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    config.ByteSize
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "4096", want: 4096},
		{in: "1B", want: 1},
		{in: "1KB", want: 1000},
		{in: "100MB", want: 100_000_000},
		{in: "2GB", want: 2_000_000_000},
		{in: "1TB", want: 1_000_000_000_000},
		{in: "512KiB", want: 512 << 10},
		{in: "64MiB", want: 64 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "3TiB", want: 3 << 40},
		{in: " 64 MiB ", want: 64 << 20},
		{in: "", wantErr: true},
		{in: "MiB", wantErr: true},
		{in: "64mib", wantErr: true},
		{in: "64M", wantErr: true},
		{in: "1.5GiB", wantErr: true},
		{in: "-1MiB", wantErr: true},
		{in: "+1MiB", wantErr: true},
		{in: "0x10", wantErr: true},
		{in: "1_000", wantErr: true},
		{in: "64 MiB B", wantErr: true},
		{in: "8388608TiB", wantErr: true},
		{in: "99999999999999999999", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := config.ParseByteSize(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseByteSize(%q) = %d, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseByteSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	for _, tc := range []struct {
		in   config.ByteSize
		want string
	}{
		{0, "0"},
		{1, "1B"},
		{1023, "1023B"},
		{1000, "1KB"},
		{1024, "1KiB"},
		{64 * config.MiB, "64MiB"},
		{100 * config.MB, "100MB"},
		{config.TiB, "1TiB"},
		{-5, "-5"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tc.in), got, tc.want)
		}
		// What String prints must parse back, so logs can be pasted into a config.
		if tc.in >= 0 {
			if back, err := config.ParseByteSize(tc.in.String()); err != nil || back != tc.in {
				t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tc.in.String(), back, err, int64(tc.in))
			}
		}
	}
}
