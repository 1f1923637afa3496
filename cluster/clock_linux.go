package cluster

import (
	"time"

	"golang.org/x/sys/unix"
)

// bootClock reads CLOCK_BOOTTIME: unlike Go's monotonic clock
// (CLOCK_MONOTONIC) it keeps counting while the host is suspended, so a
// node that wakes from a suspend sees its lease as expired, as it is for
// the others.
func bootClock() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		panic("clock_gettime(CLOCK_BOOTTIME): " + err.Error())
	}
	return time.Duration(ts.Nano())
}
