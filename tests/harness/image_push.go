package harness

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// pushTimeout bounds a push whose ctx has no deadline: a registry that
// accepts the connection and never answers must not hang the test binary.
const pushTimeout = 2 * time.Minute

// Push copies the image tagged tag in the OCI layout layoutDir to dstRef
// ("127.0.0.1:5000/repo:tag", with or without "docker://") with skopeo, over
// plain http, keeping the manifest and blob digests as they are in the
// layout. The error carries skopeo's output.
func Push(ctx context.Context, layoutDir, tag, dstRef string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pushTimeout)
		defer cancel()
	}
	dst := dstRef
	if !strings.HasPrefix(dst, "docker://") {
		dst = "docker://" + dst
	}
	// --insecure-policy: the host's /etc/containers/policy.json is not ours
	// to rely on; --preserve-digests: a silently converted manifest would make
	// every digest a test computed from the layout wrong.
	cmd := exec.CommandContext(ctx, "skopeo", "--insecure-policy", "copy",
		"--dest-tls-verify=false", "--preserve-digests",
		"oci:"+layoutDir+":"+tag, dst)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// Give skopeo a moment to exit on cancellation, then stop waiting on its
	// output pipes.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", err, ctxErr)
		}
		return fmt.Errorf("failed to push %s:%s to %s: %w; skopeo output: %s",
			layoutDir, tag, dstRef, err, strings.TrimSpace(out.String()))
	}
	return nil
}
