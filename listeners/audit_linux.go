package listeners

import "golang.org/x/sys/unix"

// bootNanos is CLOCK_BOOTTIME in nanoseconds: it keeps counting while the
// host is suspended, like the lease's clock.
func bootNanos() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return ts.Nano()
}
