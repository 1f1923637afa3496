//go:build !linux

package listeners

// bootNanos is 0 where CLOCK_BOOTTIME does not exist.
func bootNanos() int64 { return 0 }
