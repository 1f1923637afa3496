//go:build !linux

package cluster

import "time"

var clockStart = time.Now()

// bootClock is the process's monotonic clock where CLOCK_BOOTTIME is
// missing; it may stop while the host is suspended.
func bootClock() time.Duration { return time.Since(clockStart) }
