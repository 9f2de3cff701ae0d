package ctl

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/mgmtapi"
)

// writeWorkerTable prints one line per worker: ID, PID, STATE, MOUNTS,
// RESTARTS, UPTIME, LOG, and with wide MODE, RSS, RESEND and LAST EXIT.
// The header is printed even for no workers, so that a script or an
// operator sees an empty table rather than nothing.
func writeWorkerTable(w io.Writer, ws []mgmtapi.Worker, wide bool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "ID\tPID\tSTATE\tMOUNTS\tRESTARTS\tUPTIME\tLOG"
	if wide {
		header += "\tMODE\tRSS\tRESEND\tLAST EXIT"
	}
	fmt.Fprintln(tw, header)
	for _, wk := range ws {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s", wk.ID, wk.PID, wk.State, len(wk.Mounts), wk.Restarts, formatUptime(wk.StartTime, now), wk.LogFile)
		if wide {
			fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s", wk.Mode, formatRSS(wk.RSSBytes), formatResend(wk), formatExit(wk.LastExit, now))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// writeWorkerDetail prints a worker and a table of its mounts.
func writeWorkerDetail(w io.Writer, wk mgmtapi.Worker, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	started := "-"
	if !wk.StartTime.IsZero() {
		started = fmt.Sprintf("%s (up %s)", wk.StartTime.Local().Format(time.RFC3339), formatUptime(wk.StartTime, now))
	}
	for _, kv := range [][2]string{
		{"ID", wk.ID},
		{"PID", strconv.Itoa(wk.PID)},
		{"Mode", wk.Mode},
		{"State", wk.State},
		{"Started", started},
		{"Restarts", strconv.Itoa(wk.Restarts)},
		{"Last exit", formatExit(wk.LastExit, now)},
		{"RSS", formatRSS(wk.RSSBytes)},
		{"FUSE_NOTIFY_RESEND", formatResend(wk)},
		{"Log", wk.LogFile},
		{"Mounts", strconv.Itoa(len(wk.Mounts))},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(wk.Mounts) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	return writeMountTable(w, wk.Mounts, false)
}

// writeMountTable prints one line per mount, with its worker when
// withWorker (a list across workers).
func writeMountTable(w io.Writer, ms []mgmtapi.Mount, withWorker bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "MOUNT ID\tSTATE\tLAYER DIGEST\tIDENTITY\tIMAGE REF\tMOUNTPOINT"
	if withWorker {
		header = "MOUNT ID\tWORKER\tSTATE\tLAYER DIGEST\tIDENTITY\tIMAGE REF\tMOUNTPOINT"
	}
	fmt.Fprintln(tw, header)
	for _, m := range ms {
		if withWorker {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.WorkerID, m.State, m.LayerDigest, formatVerification(m), m.ImageRef, m.Mountpoint)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.State, m.LayerDigest, formatVerification(m), m.ImageRef, m.Mountpoint)
		}
	}
	return tw.Flush()
}

// writeStatus prints the snapshotter's status.
func writeStatus(w io.Writer, st mgmtapi.Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	states := make([]string, 0, len(st.WorkersByState))
	for state, n := range st.WorkersByState {
		states = append(states, fmt.Sprintf("%d %s", n, state))
	}
	slices.Sort(states)
	workers := strconv.Itoa(st.Workers)
	if len(states) > 0 {
		workers += " (" + strings.Join(states, ", ") + ")"
	}
	resend := "no (Linux < 6.9: reads in flight when a worker dies may hang)"
	if st.Kernel.FUSENotifyResend {
		resend = "yes"
	}
	if st.Kernel.Error != "" {
		resend = "unknown: " + st.Kernel.Error
	}
	for _, kv := range [][2]string{
		{"Version", st.Version},
		{"Health", st.Health},
		{"Mode", st.Mode},
		{"Workers", workers},
		{"Mounts", strconv.Itoa(st.Mounts)},
		{"Kernel", st.Kernel.Release},
		{"FUSE_NOTIFY_RESEND", resend},
		{"Mounts without RESEND", strconv.Itoa(st.Kernel.MountsWithoutResend)},
		{"FUSE protocol", formatList(st.Kernel.FUSEProtocols)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range st.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	for _, i := range st.Incidents {
		fmt.Fprintf(w, "incident: %s forged layer %s of %s: config claims DiffID %s, blob has %s (chain ID %s); quarantined\n",
			i.Time.Format(time.RFC3339), i.LayerDigest, i.ImageRef, i.ClaimedDiffID, i.ComputedDiffID, i.ChainID)
	}
	return nil
}

// formatVerification says whether the blob a mount serves was proven to
// have the DiffID its chain ID implies: "unverified", "verified", or
// "forged:<the DiffID it really has>"; "-" when not reported.
func formatVerification(m mgmtapi.Mount) string {
	switch {
	case m.Verification == "":
		return "-"
	case m.DiffID != "" && m.Verification == "forged":
		return m.Verification + ":" + shortDigest(digest.Digest(m.DiffID))
	default:
		return m.Verification
	}
}

func formatList(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return strings.Join(l, ", ")
}

func formatRSS(n int64) string {
	if n <= 0 {
		return "-"
	}
	return formatSize(n)
}

// formatResend says whether a worker's mounts can have their requests
// resent after a takeover; "-" while it has no mounts to tell.
func formatResend(wk mgmtapi.Worker) string {
	switch {
	case len(wk.Mounts) == 0:
		return "-"
	case wk.FUSENotifyResend:
		return "yes"
	default:
		return "no"
	}
}

// formatExit describes the last exit of a worker id ("-": none yet).
func formatExit(e *mgmtapi.Exit, now time.Time) string {
	if e == nil {
		return "-"
	}
	cause := e.Cause
	if e.Expected {
		cause = "stopped:" + cause // by the snapshotter: not a crash
	}
	return fmt.Sprintf("%s (pid %d, %s ago)", cause, e.PID, formatUptime(e.Time, now))
}

// sortMounts orders mounts by id: numeric ids (the snapshot ids the
// snapshotter uses) by value.
func sortMounts(ms []mgmtapi.Mount) {
	slices.SortFunc(ms, func(a, b mgmtapi.Mount) int { return compareMountIDs(a.ID, b.ID) })
}

// compareMountIDs orders numeric ids by value and the rest as strings,
// numbers first.
func compareMountIDs(a, b string) int {
	na, errA := strconv.ParseUint(a, 10, 64)
	nb, errB := strconv.ParseUint(b, 10, 64)
	switch {
	case errA == nil && errB == nil:
		return cmp.Compare(na, nb)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// formatUptime says how long ago start was, in the two largest units
// ("45s", "12m30s", "3h12m", "4d3h"); "-" when start is unknown.
func formatUptime(start, now time.Time) string {
	if start.IsZero() {
		return "-"
	}
	d := max(now.Sub(start), 0).Truncate(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// formatSize prints a byte count in binary units ("3.2 MiB").
func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// shortDigest abbreviates a digest to its algorithm and 12 hex digits
// ("sha256:0123456789ab…"), enough to tell the layers of an image apart.
func shortDigest(d digest.Digest) string {
	if d.Validate() != nil || len(d.Encoded()) <= 12 {
		return d.String()
	}
	return string(d.Algorithm()) + ":" + d.Encoded()[:12] + "…"
}
