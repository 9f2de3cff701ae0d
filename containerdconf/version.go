package containerdconf

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/containerd/errdefs"
)

// Version is a containerd release.
type Version struct {
	Major, Minor, Patch int
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// V2 tells whether v is of the 2.x line, whose CRI and transfer service
// take the keys of DropIn; 1.6 and 1.7 take MergeV1's.
func (v Version) V2() bool { return v.Major >= 2 }

// Supported tells whether lazyfs knows how to configure v: 1.6, 1.7 and 2.x.
func (v Version) Supported() bool {
	return v.Major == 2 || (v.Major == 1 && (v.Minor == 6 || v.Minor == 7))
}

// versionPattern finds the release in `containerd --version`'s line, e.g.
// "containerd github.com/containerd/containerd/v2 2.3.7+unknown <commit>" or
// Debian's "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3":
// the first word of the form N.N.N after the module path.
var versionPattern = regexp.MustCompile(`\s[v]?(\d+)\.(\d+)\.(\d+)`)

// ParseVersion reads the release out of `containerd --version`'s output.
func ParseVersion(out string) (Version, error) {
	m := versionPattern.FindStringSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("no containerd release in %q: %w", out, errdefs.ErrInvalidArgument)
	}
	var v Version
	for i, p := range []*int{&v.Major, &v.Minor, &v.Patch} {
		n, err := strconv.Atoi(m[i+1])
		if err != nil {
			return Version{}, fmt.Errorf("containerd release in %q: %w: %w", out, errdefs.ErrInvalidArgument, err)
		}
		*p = n
	}
	return v, nil
}
