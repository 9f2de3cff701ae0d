package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// writeWorkerTable prints one line per worker: ID, PID, STATE, MOUNTS,
// UPTIME, LOG. The header is printed even for no workers, so that a script
// or an operator sees an empty table rather than nothing.
func writeWorkerTable(w io.Writer, statuses []workerStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPID\tSTATE\tMOUNTS\tUPTIME\tLOG")
	for _, st := range statuses {
		pid, mounts, uptime := "-", "-", "-"
		if st.Error == "" {
			pid = strconv.Itoa(st.PID)
			mounts = strconv.Itoa(len(st.Mounts))
			uptime = formatUptime(st.StartTime, now)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", st.ID, pid, st.State, mounts, uptime, st.Log)
	}
	return tw.Flush()
}

// writeWorkerDetail prints a worker and a table of its mounts.
func writeWorkerDetail(w io.Writer, st workerStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	started := "-"
	if !st.StartTime.IsZero() {
		started = fmt.Sprintf("%s (up %s)", st.StartTime.Local().Format(time.RFC3339), formatUptime(st.StartTime, now))
	}
	for _, kv := range [][2]string{
		{"ID", st.ID},
		{"PID", strconv.Itoa(st.PID)},
		{"Version", st.Version},
		{"State", string(st.State)},
		{"Started", started},
		{"API socket", st.APISocket},
		{"Log", st.Log},
		{"Mounts", strconv.Itoa(len(st.Mounts))},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Mounts) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MOUNT ID\tSTATE\tLAYER DIGEST\tIDENTITY\tIMAGE REF\tMOUNTPOINT")
	for _, m := range st.Mounts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.State, m.LayerDigest, formatVerification(m), m.ImageRef, m.Mountpoint)
	}
	return tw.Flush()
}

// formatVerification says whether the blob a mount serves (LAYER DIGEST)
// was proven to have the DiffID its chain ID implies: "unverified",
// "verified", or "forged:<the DiffID it really has>"; "-" from a worker
// that does not report it.
func formatVerification(m daemonapi.MountInfo) string {
	switch {
	case m.Verification == "":
		return "-"
	case m.Verification == daemonapi.Forged && m.DiffID != "":
		return string(m.Verification) + ":" + shortDigest(digest.Digest(m.DiffID))
	default:
		return string(m.Verification)
	}
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
