package daemonapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errhttp"

	"github.com/lazyfs/lazyfs/daemonapi"
)

func TestAPIErrorClasses(t *testing.T) {
	checkLeaks(t)
	b := &fakeBackend{}
	c, path := startAPI(t, b)
	hc := rawHTTP(t, path)
	body, _ := json.Marshal(validRequest())

	for _, tc := range []struct {
		class error
		code  string
	}{
		{errdefs.ErrInvalidArgument, daemonapi.CodeInvalidArgument},
		{errdefs.ErrNotFound, daemonapi.CodeNotFound},
		{errdefs.ErrAlreadyExists, daemonapi.CodeAlreadyExists},
		{errdefs.ErrPermissionDenied, daemonapi.CodePermissionDenied},
		{errdefs.ErrResourceExhausted, daemonapi.CodeResourceExhausted},
		{errdefs.ErrFailedPrecondition, daemonapi.CodeFailedPrecondition},
		{errdefs.ErrConflict, daemonapi.CodeConflict},
		{errdefs.ErrNotModified, daemonapi.CodeNotModified},
		{errdefs.ErrAborted, daemonapi.CodeAborted},
		{errdefs.ErrOutOfRange, daemonapi.CodeOutOfRange},
		{errdefs.ErrNotImplemented, daemonapi.CodeNotImplemented},
		{errdefs.ErrInternal, daemonapi.CodeInternal},
		{errdefs.ErrUnavailable, daemonapi.CodeUnavailable},
		{errdefs.ErrDataLoss, daemonapi.CodeDataLoss},
		{errdefs.ErrUnauthenticated, daemonapi.CodeUnauthenticated},
		{errdefs.ErrUnknown, daemonapi.CodeUnknown},
		{context.Canceled, daemonapi.CodeCanceled},
		{context.DeadlineExceeded, daemonapi.CodeDeadlineExceeded},
		{errors.New("no class at all"), daemonapi.CodeUnknown},
	} {
		t.Run(tc.code+"/"+tc.class.Error(), func(t *testing.T) {
			b.mu.Lock()
			b.err = fmt.Errorf("layer %s refused: %w", layerDigest, tc.class)
			b.mu.Unlock()
			status := errhttp.ToHTTP(tc.class)

			_, err := c.LoadLayer(testContext(t), validRequest())
			if err == nil {
				t.Fatal("LoadLayer() succeeded")
			}
			wantClass := tc.class
			if tc.code == daemonapi.CodeUnknown {
				wantClass = errdefs.ErrUnknown
			}
			if !errors.Is(err, wantClass) {
				t.Errorf("LoadLayer() error %v is not %v", err, wantClass)
			}
			prefix := fmt.Sprintf("worker %s (%s): load layer: ", testWorker, path)
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			// A 304 carries no body, so only the class survives.
			if status != http.StatusNotModified && !strings.Contains(err.Error(), "refused") {
				t.Errorf("error %q lost the worker's message", err)
			}

			resp, err := hc.Post("http://x"+daemonapi.PathLayers, "application/json", strings.NewReader(string(body)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != status {
				t.Errorf("status %d, want %d", resp.StatusCode, status)
			}
			if status == http.StatusNotModified {
				return
			}
			var info daemonapi.ErrorInfo
			if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
				t.Fatal(err)
			}
			if info.Code != tc.code || !strings.Contains(info.Message, "refused") {
				t.Errorf("body %+v, want code %s", info, tc.code)
			}
		})
	}

	t.Run("every endpoint", func(t *testing.T) {
		b.mu.Lock()
		b.err = fmt.Errorf("boom: %w", errdefs.ErrNotFound)
		b.mu.Unlock()
		ctx := testContext(t)
		_, infoErr := c.Info(ctx)
		for op, err := range map[string]error{
			"info":       infoErr,
			"detach m":   c.Detach(ctx, "m"),
			"shutdown":   c.Shutdown(ctx),
			"load layer": func() error { _, err := c.LoadLayer(ctx, validRequest()); return err }(),
		} {
			if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "): "+op+": ") {
				t.Errorf("%s: %v, want not found wrapped with the operation", op, err)
			}
		}
	})
	t.Run("outermost class wins", func(t *testing.T) {
		// A worker refusing a layer wraps the cause it met (here a
		// missing blob) as an invalid argument: the snapshotter must
		// see the refusal, in the status and in the class alike.
		b.mu.Lock()
		b.err = fmt.Errorf("layer refused: %w: %w", errdefs.ErrInvalidArgument, fmt.Errorf("fetch toc: %w", errdefs.ErrNotFound))
		b.mu.Unlock()
		_, err := c.LoadLayer(testContext(t), validRequest())
		if !errdefs.IsInvalidArgument(err) || errdefs.IsNotFound(err) {
			t.Errorf("LoadLayer() = %v, want invalid argument only", err)
		}
		resp, err := hc.Post("http://x"+daemonapi.PathLayers, "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
	})
}
