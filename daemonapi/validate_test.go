package daemonapi_test

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
)

func TestValidateMountID(t *testing.T) {
	for _, tc := range []struct {
		id    string
		valid bool
	}{
		{"42", true},
		{"sha256:0f4a1d5b2e9c8a7f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918070", true},
		{"default_5.layer-3", true},
		{strings.Repeat("m", daemonapi.MaxMountIDLength), true},
		{"", false},
		{strings.Repeat("m", daemonapi.MaxMountIDLength+1), false},
		{".", false},
		{"..", false},
		{".hidden", false},
		{"-flag", false},
		{"a/b", false},
		{"a b", false},
		{"a%2Fb", false},
		{"a\x00b", false},
		{"ünïcode", false},
	} {
		err := daemonapi.ValidateMountID(tc.id)
		if tc.valid && err != nil {
			t.Errorf("ValidateMountID(%q) = %v, want nil", tc.id, err)
		}
		if !tc.valid && !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateMountID(%q) = %v, want invalid argument", tc.id, err)
		}
	}
}
