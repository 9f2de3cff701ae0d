// Package doubling appends to slices that grow to a size known only at the
// end, such as the records of a TOC decoded as a stream.
//
// The built-in append grows a large slice by about a quarter each time it
// is full, copying it: building a slice of n elements allocates about 5n,
// 4n of it garbage, and a worker's peak while it loads a big layer is
// mostly garbage the collector has not reached yet (the runtime lets the
// heap grow to twice what was live at its last collection). Doubling
// allocates about 2n, n of it garbage, at the price of up to n of room
// never written (memory the kernel does not back until it is written).
package doubling

// minCap is the capacity of a slice's first array.
const minCap = 256

// Append appends v to s, doubling s's capacity when it is full.
func Append[T any](s []T, v T) []T {
	if len(s) == cap(s) {
		grown := make([]T, len(s), max(2*cap(s), minCap))
		copy(grown, s)
		s = grown
	}
	return append(s, v)
}
