package supervisor

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// TestWaitReadyChecksThePID guards waitReady's pid check: during a planned
// replacement the predecessor still answers on the API socket, so a worker
// is ready only when the socket answers with its own pid. An answer from
// another pid is waited past, then reported; the worker's own pid is ready.
func TestWaitReadyChecksThePID(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answerPID int
		wantErr   string
	}{
		{"own pid", 4242, ""},
		{"another process", 1717, "answered by pid 1717, not 4242"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "wr")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			sock := filepath.Join(dir, "api.sock")
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != daemonapi.PathDaemon {
					http.NotFound(w, r)
					return
				}
				json.NewEncoder(w).Encode(daemonapi.DaemonInfo{ID: "w1", PID: tc.answerPID})
			})}
			go srv.Serve(l)
			defer srv.Close()

			readyr, readyw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer readyr.Close()
			readyw.Write([]byte{1})
			readyw.Close()

			s := &Supervisor{opts: Options{ReadyTimeout: 300 * time.Millisecond, LogDir: dir}}
			w := &worker{id: "w1", pid: 4242, api: daemonapi.NewClient(sock, "w1"), exited: make(chan struct{})}
			err = s.waitReady(context.Background(), w, readyr)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("waitReady = %v, want ready", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("waitReady = %v, want an error saying %q", err, tc.wantErr)
			}
		})
	}
}
