package layout

import "testing"

// TestPathsAreStable pins every name: they are on-disk state that an
// upgraded snapshotter must find (DESIGN.md, "Files on a node").
func TestPathsAreStable(t *testing.T) {
	r, run, logs := Root(DefaultRoot), RunDir(DefaultRunDir), LogDir(DefaultLogDir)
	for _, tc := range []struct{ got, want string }{
		{r.MetadataDB(), "/var/lib/lazyfs/metadata.db"},
		{r.WorkersDB(), "/var/lib/lazyfs/workers.db"},
		{r.Snapshots(), "/var/lib/lazyfs/snapshots"},
		{r.Snapshot("7"), "/var/lib/lazyfs/snapshots/7"},
		{r.SnapshotFS("7"), "/var/lib/lazyfs/snapshots/7/fs"},
		{r.SnapshotWork("7"), "/var/lib/lazyfs/snapshots/7/work"},
		{FS("/x/new-1"), "/x/new-1/fs"},
		{Work("/x/new-1"), "/x/new-1/work"},
		{r.Cache(), "/var/lib/lazyfs/cache"},
		{r.TOCs(), "/var/lib/lazyfs/tocs"},
		{run.SnapshotterSocket(), "/run/lazyfs/snapshotter.sock"},
		{run.MgmtSocket(), "/run/lazyfs/api.sock"},
		{run.Workers(), "/run/lazyfs/workers"},
		{run.Worker("shared"), "/run/lazyfs/workers/shared"},
		{run.WorkerAPISocket("shared"), "/run/lazyfs/workers/shared/api.sock"},
		{run.WorkerControlSocket("shared"), "/run/lazyfs/workers/shared/control.sock"},
		{run.WorkerConfig(), "/run/lazyfs/workers/config.json"},
		{logs.Daemons(), "/var/log/lazyfs/daemons"},
		{logs.WorkerLog("shared"), "/var/log/lazyfs/daemons/shared.log"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}
