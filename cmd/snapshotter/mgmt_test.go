package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/lazyfs/lazyfs/mgmtapi"
	"github.com/lazyfs/lazyfs/supervisor"
)

func TestStatusOf(t *testing.T) {
	serving := func(id string, resend bool) supervisor.MountStatus {
		return supervisor.MountStatus{ID: id, State: supervisor.MountServing, Resend: resend, Protocol: "7.45"}
	}
	kernel := mgmtapi.Kernel{Release: "6.18.0", FUSENotifyResend: true}
	tests := []struct {
		name     string
		workers  []supervisor.WorkerStatus
		health   string
		problems []string // substrings, one per problem
	}{
		{"no workers", nil, "ok", nil},
		{"all serving", []supervisor.WorkerStatus{
			{ID: "a", State: supervisor.StateServing, Mounts: []supervisor.MountStatus{serving("1", true), serving("2", true)}},
			{ID: "b", State: supervisor.StateReady},
		}, "ok", nil},
		{"unheld mount", []supervisor.WorkerStatus{
			{ID: "a", State: supervisor.StateServing, Mounts: []supervisor.MountStatus{{ID: "1", State: supervisor.MountUnheld, Resend: true}}},
		}, "degraded", []string{"mount 1 of worker a has no held connection"}},
		{"exited without successor, no resend", []supervisor.WorkerStatus{
			{ID: "a", PID: 9, State: supervisor.StateExited, Mounts: []supervisor.MountStatus{serving("1", false)}},
		}, "degraded", []string{"worker a (pid 9) exited", "1 mounts lack FUSE_NOTIFY_RESEND"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := statusOf("per-image", kernel, tc.workers)
			if st.Health != tc.health || len(st.Problems) != len(tc.problems) {
				t.Fatalf("health %s, problems %q; want %s and %d problems", st.Health, st.Problems, tc.health, len(tc.problems))
			}
			for i, p := range tc.problems {
				if !strings.Contains(st.Problems[i], p) {
					t.Errorf("problem %q lacks %q", st.Problems[i], p)
				}
			}
			mounts := 0
			for _, w := range tc.workers {
				mounts += len(w.Mounts)
			}
			if st.Workers != len(tc.workers) || st.Mounts != mounts || st.Mode != "per-image" || st.Kernel.Release != "6.18.0" {
				t.Errorf("status %+v", st)
			}
		})
	}
	st := statusOf("shared", kernel, tests[1].workers)
	if st.WorkersByState[string(supervisor.StateServing)] != 1 || st.WorkersByState[string(supervisor.StateReady)] != 1 || !slices.Equal(st.Kernel.FUSEProtocols, []string{"7.45"}) {
		t.Errorf("by state %v, protocols %q", st.WorkersByState, st.Kernel.FUSEProtocols)
	}
}
