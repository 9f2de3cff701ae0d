package daemonapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/lazyfs/lazyfs/daemonapi"
)

func TestHealthAndMetricsAsIs(t *testing.T) {
	_, path := startAPI(t, &fakeBackend{})
	hc := rawHTTP(t, path)
	for _, tc := range []struct{ path, want string }{
		{daemonapi.PathHealth, "ok"},
		{daemonapi.PathMetrics, "lazyfs_test 1"},
	} {
		resp, err := hc.Get("http://x" + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s = %d %q", tc.path, resp.StatusCode, body)
		}
	}
}

func TestAPIBadRequests(t *testing.T) {
	checkLeaks(t)
	b := &fakeBackend{}
	_, path := startAPI(t, b)
	hc := rawHTTP(t, path)

	valid := func(edit func(m map[string]any)) string {
		var m map[string]any
		raw, _ := json.Marshal(validRequest())
		json.Unmarshal(raw, &m)
		edit(m)
		out, _ := json.Marshal(m)
		return string(out)
	}
	without := func(field string) string { return valid(func(m map[string]any) { delete(m, field) }) }
	with := func(field string, v any) string { return valid(func(m map[string]any) { m[field] = v }) }

	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code, text               string
	}{
		{"bad JSON", "POST", daemonapi.PathLayers, `{"mount_id":`, 400, daemonapi.CodeInvalidArgument, "invalid request body"},
		{"not an object", "POST", daemonapi.PathLayers, `[1,2]`, 400, daemonapi.CodeInvalidArgument, "invalid request body"},
		{"empty body", "POST", daemonapi.PathLayers, ``, 400, daemonapi.CodeInvalidArgument, "empty"},
		{"unknown field", "POST", daemonapi.PathLayers, with("blob_url", "http://evil"), 400, daemonapi.CodeInvalidArgument, "blob_url"},
		{"trailing data", "POST", daemonapi.PathLayers, valid(func(map[string]any) {}) + `{}`, 400, daemonapi.CodeInvalidArgument, "trailing"},
		{"too large", "POST", daemonapi.PathLayers, with("image_ref", strings.Repeat("r", 70<<10)), 400, daemonapi.CodeInvalidArgument, "larger than"},
		{"missing mount_id", "POST", daemonapi.PathLayers, without("mount_id"), 400, daemonapi.CodeInvalidArgument, "mount_id"},
		{"missing image_ref", "POST", daemonapi.PathLayers, without("image_ref"), 400, daemonapi.CodeInvalidArgument, "image_ref is missing"},
		{"missing layer_digest", "POST", daemonapi.PathLayers, without("layer_digest"), 400, daemonapi.CodeInvalidArgument, "layer_digest is missing"},
		{"missing toc_digest", "POST", daemonapi.PathLayers, without("toc_digest"), 400, daemonapi.CodeInvalidArgument, "toc_digest is missing"},
		{"missing mountpoint", "POST", daemonapi.PathLayers, without("mountpoint"), 400, daemonapi.CodeInvalidArgument, "mountpoint is missing"},
		{"bad mount_id", "POST", daemonapi.PathLayers, with("mount_id", "a/b"), 400, daemonapi.CodeInvalidArgument, "mount_id"},
		{"bad layer_digest", "POST", daemonapi.PathLayers, with("layer_digest", "sha256:xyz"), 400, daemonapi.CodeInvalidArgument, "layer_digest"},
		{"bad toc_digest", "POST", daemonapi.PathLayers, with("toc_digest", "md5:0123"), 400, daemonapi.CodeInvalidArgument, "toc_digest"},
		{"space in image_ref", "POST", daemonapi.PathLayers, with("image_ref", "a b"), 400, daemonapi.CodeInvalidArgument, "image_ref"},
		{"relative mountpoint", "POST", daemonapi.PathLayers, with("mountpoint", "snapshots/1/fs"), 400, daemonapi.CodeInvalidArgument, "mountpoint"},
		{"unclean mountpoint", "POST", daemonapi.PathLayers, with("mountpoint", "/a/../etc"), 400, daemonapi.CodeInvalidArgument, "mountpoint"},
		{"wrong type", "POST", daemonapi.PathLayers, with("mount_id", 42), 400, daemonapi.CodeInvalidArgument, "invalid request body"},
		{"GET layers", "GET", daemonapi.PathLayers, ``, 405, daemonapi.CodeInvalidArgument, "not allowed"},
		{"PUT daemon", "PUT", daemonapi.PathDaemon, ``, 405, daemonapi.CodeInvalidArgument, "not allowed"},
		{"GET shutdown", "GET", daemonapi.PathShutdown, ``, 405, daemonapi.CodeInvalidArgument, "not allowed"},
		{"POST healthz", "POST", daemonapi.PathHealth, ``, 405, daemonapi.CodeInvalidArgument, "not allowed"},
		{"GET mount", "GET", daemonapi.PathMounts + "m1", ``, 405, daemonapi.CodeInvalidArgument, "not allowed"},
		{"unknown path", "GET", "/api/v1/nope", ``, 404, daemonapi.CodeNotFound, "no such endpoint"},
		{"unknown version", "GET", "/api/v2/daemon", ``, 404, daemonapi.CodeNotFound, "no such endpoint"},
		{"mount without id", "DELETE", daemonapi.PathMounts, ``, 404, daemonapi.CodeNotFound, "no such endpoint"},
		{"mount id with a space", "DELETE", daemonapi.PathMounts + "a%20b", ``, 400, daemonapi.CodeInvalidArgument, "not allowed"},
		{"mount id with a slash", "DELETE", daemonapi.PathMounts + "a%2Fb", ``, 400, daemonapi.CodeInvalidArgument, "not allowed"},
		{"nested mount path", "DELETE", daemonapi.PathMounts + "a/b", ``, 404, daemonapi.CodeNotFound, "no such endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://x"+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			var info daemonapi.ErrorInfo
			if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
				t.Fatal(err)
			}
			if info.Code != tc.code || !strings.Contains(info.Message, tc.text) {
				t.Errorf("body %+v, want code %s and a message with %q", info, tc.code, tc.text)
			}
		})
	}
	if calls, _ := b.recorded(); len(calls) != 0 {
		t.Errorf("bad requests reached the backend: %q", calls)
	}
}
