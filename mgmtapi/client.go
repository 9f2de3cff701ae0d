package mgmtapi

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
	"strconv"

	"github.com/containerd/errdefs"
)

// Bounds on what the client reads: a JSON answer (thousands of workers
// fit) and an error.
const (
	maxResponseBody = 32 << 20
	maxErrorBody    = 64 << 10
)

// ErrUnreachable is returned when no snapshotter answers at the socket (it
// is missing, or nobody listens on it): nothing was sent.
var ErrUnreachable = fmt.Errorf("snapshotter not running or not listening: %w", errdefs.ErrUnavailable)

// Client talks to the snapshotter's management API. Every error names the
// operation and the socket and keeps the errdefs class the server gave it;
// ErrUnreachable means the snapshotter could not be reached. Calls are bounded by their ctx only.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client of the API at socketPath; nothing is dialled
// until a call.
func NewClient(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", socketPath)
			if err != nil && ctx.Err() == nil {
				return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
			}
			return conn, err
		},
		// One connection per request: a CLI makes a few, and a restarted
		// snapshotter never meets a stale kept-alive one.
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	return &Client{socket: socketPath, hc: &http.Client{Transport: tr}}
}

// Socket returns the socket the client talks to.
func (c *Client) Socket() string { return c.socket }

// Status returns the snapshotter's state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, PathStatus, &st)
	return st, c.wrap("status", err)
}

// Workers lists the workers.
func (c *Client) Workers(ctx context.Context) ([]Worker, error) {
	var ws []Worker
	err := c.do(ctx, http.MethodGet, pathWorkerList, &ws)
	return ws, c.wrap("list workers", err)
}

// Worker returns one worker; errdefs.ErrNotFound when none runs under id.
func (c *Client) Worker(ctx context.Context, id string) (Worker, error) {
	var w Worker
	err := c.workerDo(ctx, http.MethodGet, id, "", &w)
	return w, c.wrap("inspect worker "+id, err)
}

// Restart replaces the worker by a new process and returns once the
// successor serves.
func (c *Client) Restart(ctx context.Context, id string) (Restart, error) {
	var res Restart
	err := c.workerDo(ctx, http.MethodPost, id, "/restart", &res)
	return res, c.wrap("restart worker "+id, err)
}

// Shutdown asks the snapshotter to stop, as SIGTERM does; with unmountAll
// it drains the node (layers in use are detached too). It returns once the
// stop has begun.
func (c *Client) Shutdown(ctx context.Context, unmountAll bool) (Shutdown, error) {
	var res Shutdown
	err := c.do(ctx, http.MethodPost, PathShutdown+"?unmount_all="+strconv.FormatBool(unmountAll), &res)
	return res, c.wrap("shutdown", err)
}

// Mounts lists the lazily loaded layers' mounts.
func (c *Client) Mounts(ctx context.Context) ([]Mount, error) {
	var ms []Mount
	err := c.do(ctx, http.MethodGet, PathMounts, &ms)
	return ms, c.wrap("list mounts", err)
}

// Logs copies the worker's log to out: its last opts.Tail lines (all of
// it when negative) and, with opts.Follow, what is appended until ctx ends,
// which is then not an error.
func (c *Client) Logs(ctx context.Context, id string, opts LogOptions, out io.Writer) error {
	op := "logs of worker " + id
	if err := ValidateWorkerID(id); err != nil {
		return c.wrap(op, err)
	}
	q := url.Values{}
	if opts.Tail >= 0 {
		q.Set("tail", strconv.Itoa(opts.Tail))
	}
	if opts.Follow {
		q.Set("follow", "true")
	}
	resp, err := c.send(ctx, http.MethodGet, PathWorkers+url.PathEscape(id)+"/logs?"+q.Encode())
	if err != nil {
		return c.wrap(op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.wrap(op, readError(resp))
	}
	_, err = io.Copy(out, resp.Body)
	if err != nil && opts.Follow && ctx.Err() != nil {
		return nil // following ends with an interrupt
	}
	return c.wrap(op, err)
}

func (c *Client) workerDo(ctx context.Context, method, id, suffix string, out any) error {
	if err := ValidateWorkerID(id); err != nil {
		return err
	}
	return c.do(ctx, method, PathWorkers+url.PathEscape(id)+suffix, out)
}

// do sends a request and decodes the JSON answer into out.
func (c *Client) do(ctx context.Context, method, path string, out any) error {
	resp, err := c.send(ctx, method, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readError(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return fmt.Errorf("failed to read the answer: %w", err)
	}
	if len(body) > maxResponseBody {
		return fmt.Errorf("answer larger than %d bytes: %w", maxResponseBody, errdefs.ErrResourceExhausted)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("malformed answer: %w: %w", errdefs.ErrUnknown, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string) (*http.Response, error) {
	// The host is a placeholder: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://lazyfs"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the socket is named by wrap, not the placeholder URL
		}
		return nil, err
	}
	return resp, nil
}

// readError turns an error answer back into an error of its class.
func readError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var info ErrorInfo
	if err := json.Unmarshal(body, &info); err != nil || info.Code == "" {
		info = ErrorInfo{Message: string(bytes.TrimSpace(body))}
	}
	return info.Err(resp.StatusCode)
}

func (c *Client) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("snapshotter management api (%s): %s: %w", c.socket, op, err)
}
