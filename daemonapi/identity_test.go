package daemonapi_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
)

func TestReadIdentity(t *testing.T) {
	id, err := daemonapi.ReadIdentity(strings.NewReader(`{"id":"img-1","api_socket":"/run/a.sock","control_socket":"/run/c.sock"}` + "\n"))
	if err != nil || id != (daemonapi.Identity{ID: "img-1", APISocket: "/run/a.sock", ControlSocket: "/run/c.sock"}) {
		t.Fatalf("ReadIdentity = %+v, %v", id, err)
	}
	if _, err := daemonapi.ReadIdentity(strings.NewReader("")); !errors.Is(err, io.EOF) {
		t.Errorf("nothing sent: %v, want io.EOF (the standby is not needed)", err)
	}
	for name, in := range map[string]string{
		"not terminated": `{"id":"a","api_socket":"b","control_socket":"c"}`,
		"not JSON":       "id=a\n",
		"no id":          `{"api_socket":"b","control_socket":"c"}` + "\n",
		"no api socket":  `{"id":"a","control_socket":"c"}` + "\n",
		"no control":     `{"id":"a","api_socket":"b"}` + "\n",
		"too long":       `{"id":"` + strings.Repeat("a", 5000) + `","api_socket":"b","control_socket":"c"}` + "\n",
	} {
		if _, err := daemonapi.ReadIdentity(strings.NewReader(in)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
}
