package daemonapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/containerd/errdefs"
)

const (
	// maxResponseBody bounds a JSON answer (daemon info with thousands
	// of mounts fits), maxErrorBody an error answer, maxMetricsBody a
	// worker's metrics page.
	maxResponseBody = 16 << 20
	maxErrorBody    = 64 << 10
	maxMetricsBody  = 32 << 20
)

// Client talks to one worker's HTTP API. Every error names the worker, its
// socket and the operation, and keeps the errdefs class the worker gave it;
// errdefs.ErrUnavailable means the request never reached the worker (no
// connection could be made), so it is safe to retry. Calls are bounded by
// their ctx only.
type Client struct {
	workerID string
	socket   string
	tr       *http.Transport
	hc       *http.Client
}

// NewClient returns a client for the worker workerID serving its API at
// socketPath. Nothing is dialled until a call.
func NewClient(socketPath, workerID string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", socketPath)
			if err != nil && ctx.Err() == nil {
				return nil, fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
			}
			return conn, err
		},
		// A connection per request: dialling a unix socket is cheap,
		// and a restarted worker then never meets a stale kept-alive
		// connection, nor does an idle one hold an fd in either process.
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &Client{
		workerID: workerID,
		socket:   socketPath,
		tr:       tr,
		hc:       &http.Client{Transport: tr},
	}
}

// Close releases the client's idle resources. It is safe to keep using the
// client afterwards.
func (c *Client) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

// Info returns the worker's description and its mounts.
func (c *Client) Info(ctx context.Context) (DaemonInfo, error) {
	var info DaemonInfo
	if err := c.do(ctx, http.MethodGet, PathDaemon, nil, &info); err != nil {
		return DaemonInfo{}, c.wrap("info", err)
	}
	return info, nil
}

// LoadLayer asks the worker to fetch, bound, verify and store the layer's
// table of contents. A layer the worker refuses for lazy loading fails with
// errdefs.ErrInvalidArgument and the worker's reason.
func (c *Client) LoadLayer(ctx context.Context, req LoadLayerRequest) (LayerInfo, error) {
	var info LayerInfo
	if err := c.do(ctx, http.MethodPost, PathLayers, req, &info); err != nil {
		return LayerInfo{}, c.wrap("load layer", err)
	}
	return info, nil
}

// Detach asks the worker to stop serving the mount.
func (c *Client) Detach(ctx context.Context, mountID string) error {
	if err := c.do(ctx, http.MethodDelete, PathMounts+url.PathEscape(mountID), nil, nil); err != nil {
		return c.wrap("detach "+mountID, err)
	}
	return nil
}

// Shutdown asks the worker to exit cleanly; it returns once the worker has
// accepted, not when it has exited.
func (c *Client) Shutdown(ctx context.Context) error {
	if err := c.do(ctx, http.MethodPost, PathShutdown, nil, nil); err != nil {
		return c.wrap("shutdown", err)
	}
	return nil
}

// Health checks that the worker answers its API.
func (c *Client) Health(ctx context.Context) error {
	body, err := c.get(ctx, PathHealth, "", 1<<10)
	if err == nil && strings.TrimSpace(string(body)) != "ok" {
		err = fmt.Errorf("unexpected health answer %q: %w", body, errdefs.ErrUnknown)
	}
	if err != nil {
		return c.wrap("health", err)
	}
	return nil
}

// Metrics returns the worker's metrics in the Prometheus text format.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	body, err := c.get(ctx, PathMetrics, "text/plain;version=0.0.4", maxMetricsBody)
	if err != nil {
		return nil, c.wrap("metrics", err)
	}
	return body, nil
}

func (c *Client) wrap(op string, err error) error {
	return fmt.Errorf("worker %s (%s): %s: %w", c.workerID, c.socket, op, err)
}

// do sends in (if not nil) as JSON and decodes a 2xx answer into out (if
// not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("failed to encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, method, path, body, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBody)).Decode(out); err != nil {
		return fmt.Errorf("failed to decode answer: %w", err)
	}
	return nil
}

// get returns the body of a 2xx answer, at most limit bytes of it.
func (c *Client) get(ctx context.Context, path, accept string, limit int64) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, path, nil, accept)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read answer: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("answer is larger than %d bytes: %w", limit, errdefs.ErrResourceExhausted)
	}
	return b, nil
}

// send makes one request and returns a 2xx response, or the error the
// worker answered with.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, accept string) (*http.Response, error) {
	// The host is never resolved: every connection goes to the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://lazyfsd"+path, body)
	if err != nil {
		return nil, fmt.Errorf("failed to build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// url.Error repeats method and URL, which name no socket.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, responseError(resp)
}

// responseError restores the error a worker answered with.
func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var info ErrorInfo
	if err := json.Unmarshal(b, &info); err != nil || info.Code == "" && info.Message == "" {
		// Not one of ours (a proxy, the mux's redirect): keep the text.
		info = ErrorInfo{Message: strings.TrimSpace(string(b))}
	}
	return info.Err(resp.StatusCode)
}
