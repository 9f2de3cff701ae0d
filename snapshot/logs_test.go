package snapshot

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/lazyfs/lazyfs/labels"
)

// logged returns a context whose log lines the hook keeps: the failures
// below are what an operator reads in the snapshotter's log, and a test
// asserts that they are reported, and only when they happen.
func logged(t *testing.T) (context.Context, *logtest.Hook) {
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	return log.WithLogger(testContext(t), logrus.NewEntry(logger)), hook
}

// entries returns the messages logged at level or above that contain msg.
func entries(hook *logtest.Hook, level logrus.Level, msg string) []*logrus.Entry {
	var out []*logrus.Entry
	for _, e := range hook.AllEntries() {
		if e.Level <= level && strings.Contains(e.Message, msg) {
			out = append(out, e)
		}
	}
	return out
}

// TestRestoreReportsFailures: a snapshot of the last run whose labels do
// not parse, or whose layer cannot be restored, is logged as an error
// naming its mountpoint; a clean restore logs no error.
func TestRestoreReportsFailures(t *testing.T) {
	ctx, hook := logged(t)
	s, fr := newLazySnapshotter(t, ctx)
	chain1, chain2 := digest.FromString("c1").String(), digest.FromString("c2").String()
	for _, c := range []string{chain1, chain2} {
		if _, err := s.Prepare(ctx, "extract "+c, "", snapshots.WithLabels(lazyLabels(c))); !errdefs.IsAlreadyExists(err) {
			t.Fatalf("Prepare %s: %v", c, err)
		}
	}
	drain := func() {
		for len(fr.restored) > 0 {
			<-fr.restored
		}
	}

	if err := s.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	drain()
	if got := entries(hook, logrus.WarnLevel, ""); len(got) != 0 {
		t.Fatalf("a clean restore logged %d warnings or errors, first %q", len(got), got[0].Message)
	}

	// chain2 loses a label it needs.
	info, err := s.Stat(ctx, chain2)
	if err != nil {
		t.Fatal(err)
	}
	info.Labels = maps.Clone(info.Labels)
	delete(info.Labels, labels.LayerDigest)
	if _, err := s.Update(ctx, info, "labels"); err != nil {
		t.Fatal(err)
	}
	hook.Reset()
	if err := s.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	drain()
	bad := entries(hook, logrus.ErrorLevel, "unreadable labels")
	if len(bad) != 1 || len(entries(hook, logrus.WarnLevel, "")) != 1 {
		t.Fatalf("restore with one unreadable snapshot logged %d such errors (%d warnings or errors), want 1", len(bad), len(entries(hook, logrus.WarnLevel, "")))
	}

	fr.mu.Lock()
	fr.restoreErr = errors.New("worker refused the layer")
	fr.mu.Unlock()
	hook.Reset()
	if err := s.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	drain()
	if got := entries(hook, logrus.ErrorLevel, "failed to restore a lazily loaded layer"); len(got) != 2 {
		t.Fatalf("%d restore failures logged, want 2", len(got))
	}
}

// TestRemoveReportsAFailedUnmount: a lazily loaded layer whose unmount
// fails is still removed, and the failure is logged; a clean removal logs
// none.
func TestRemoveReportsAFailedUnmount(t *testing.T) {
	ctx, hook := logged(t)
	s, fr := newLazySnapshotter(t, ctx)
	for i, c := range []string{digest.FromString("c1").String(), digest.FromString("c2").String()} {
		if _, err := s.Prepare(ctx, "extract "+c, "", snapshots.WithLabels(lazyLabels(c))); !errdefs.IsAlreadyExists(err) {
			t.Fatalf("Prepare %s: %v", c, err)
		}
		if i == 1 {
			fr.mu.Lock()
			fr.unmountErr = errors.New("device busy")
			fr.mu.Unlock()
		}
		hook.Reset()
		if err := s.Remove(ctx, c); err != nil {
			t.Fatalf("Remove %s: %v", c, err)
		}
		if _, err := s.Stat(ctx, c); !errdefs.IsNotFound(err) {
			t.Fatalf("%s after Remove: %v", c, err)
		}
		if got, want := len(entries(hook, logrus.WarnLevel, "failed to unmount a lazily loaded layer")), i; got != want {
			t.Fatalf("removal %d logged %d unmount failures, want %d", i+1, got, want)
		}
	}
}

// TestVerdictFailuresAreLogged: a verdict the worker could not be told is
// logged (the worker then reports the layer unverified); a told one is not.
func TestVerdictFailuresAreLogged(t *testing.T) {
	for _, fail := range []bool{false, true} {
		e := newProofEnv(t, WithVerify(VerifyBeforeUse, 0))
		e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, honestBlob, "reg/a:1"), realDiffID)
		if fail {
			e.fr.verdictErr = errors.New("worker gone")
		}
		close(e.release)
		ctx, hook := logged(t)
		c := e.s.prove(ctx, realDiffID.String(), "reg/a:1")
		receive(t, c.done, "the proof")
		if c.res.err != nil {
			t.Fatalf("proof: %v", c.res.err)
		}
		if got := len(entries(hook, logrus.WarnLevel, "failed to tell the worker the verdict")); got != btoi(fail) {
			t.Fatalf("verdict failing %v: %d such warnings", fail, got)
		}
	}
}

// TestIncidentWriteFailureIsLogged: an incident that cannot be written is
// logged as an error (and kept in memory); a written one logs nothing.
func TestIncidentWriteFailureIsLogged(t *testing.T) {
	ctx, hook := logged(t)
	dir := t.TempDir()
	in, err := loadIncidents(dir)
	if err != nil {
		t.Fatal(err)
	}
	in.add(ctx, Incident{Snapshot: "a"})
	if n := len(entries(hook, logrus.WarnLevel, "")); n != 0 {
		t.Fatalf("a written incident logged %d warnings or errors", n)
	}
	in.path = dir + "/no such dir/" + incidentsFile
	in.add(ctx, Incident{Snapshot: "b"})
	if n := len(entries(hook, logrus.ErrorLevel, "failed to write the incident record")); n != 1 || len(in.list) != 2 {
		t.Fatalf("an unwritable incident: %d errors logged, %d incidents kept; want 1 and 2", n, len(in.list))
	}
}

// TestRestoredVerdictFailureIsLogged: a verdict that cannot be told again
// to the worker of a restored layer is logged; one told is not.
func TestRestoredVerdictFailureIsLogged(t *testing.T) {
	for _, fail := range []bool{false, true} {
		e := newProofEnv(t)
		stored := e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, honestBlob, "reg/a:1"), realDiffID)
		if err := e.s.recordProof(testContext(t), realDiffID.String(), proof{diffID: realDiffID}); err != nil {
			t.Fatal(err)
		}
		e.fr.mu.Lock()
		e.fr.verdictSet = make(chan string, 1)
		if fail {
			e.fr.verdictErr = errors.New("worker gone")
		}
		e.fr.mu.Unlock()
		ctx, hook := logged(t)
		if err := e.s.Restore(ctx); err != nil {
			t.Fatal(err)
		}
		if id := receive(t, e.fr.verdictSet, "the verdict told again"); id != stored {
			t.Fatalf("verdict told for %s, want %s", id, stored)
		}
		e.s.wg.Wait() // restoreVerdicts has logged what it logs
		if got := len(entries(hook, logrus.WarnLevel, "failed to tell a worker the verdict on a restored layer")); got != btoi(fail) {
			t.Fatalf("verdict failing %v: %d such warnings", fail, got)
		}
		close(e.release)
	}
}
