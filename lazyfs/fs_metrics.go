package lazyfs

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lazyfs/lazyfs/metrics"
)

// op is a FUSE operation, as the metrics label it.
type op int

const (
	opLookup op = iota
	opGetattr
	opAccess
	opStatfs
	opOpen
	opRead
	opRelease
	opReadlink
	opOpendir
	opReaddir
	opReaddirplus
	opReleasedir
	opGetxattr
	opListxattr
	numOps
)

var opNames = [numOps]string{
	opLookup:      "lookup",
	opGetattr:     "getattr",
	opAccess:      "access",
	opStatfs:      "statfs",
	opOpen:        "open",
	opRead:        "read",
	opRelease:     "release",
	opReadlink:    "readlink",
	opOpendir:     "opendir",
	opReaddir:     "readdir",
	opReaddirplus: "readdirplus",
	opReleasedir:  "releasedir",
	opGetxattr:    "getxattr",
	opListxattr:   "listxattr",
}

// The series are resolved once: a label lookup per request would cost more
// than most of the operations themselves. Creating them up front also makes
// every series visible at zero.
var (
	opDuration [numOps]prometheus.Observer
	opFailures [numOps]prometheus.Counter
)

func init() {
	for o, name := range opNames {
		opDuration[o] = metrics.FuseOpDuration.WithLabelValues(name)
		opFailures[o] = metrics.FuseOpFailures.WithLabelValues(name)
	}
}

// observe records the duration of an operation that started at start.
// Use it as: defer opX.observe(time.Now()).
func (o op) observe(start time.Time) {
	opDuration[o].Observe(time.Since(start).Seconds())
}

// failed counts an operation answered with an I/O error.
func (o op) failed() {
	opFailures[o].Inc()
}

// served counts a successful READ of n bytes.
func served(n int) {
	metrics.ReadsServed.Inc()
	metrics.BytesServed.Add(float64(n))
}
