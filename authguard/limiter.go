package authguard

import (
	"sync"
	"time"
)

// limiter slows down password guessing: after `threshold` failed logins from
// one address within `window`, each further attempt from it waits `base`,
// doubling with every new failure up to `ceiling`. Attempts from one address
// are spaced out even when sent concurrently, and an address whose queue is
// already `ceiling` long is refused at once. An address forgets its failures
// after `window` without one.
//
// It keeps at most `capacity` addresses and runs no goroutine: stale entries
// are dropped when room is needed.
type limiter struct {
	threshold int
	window    time.Duration
	base      time.Duration
	ceiling   time.Duration
	capacity  int

	mu      sync.Mutex
	entries map[string]*failures
}

type failures struct {
	count int
	first time.Time // start of the counting window
	last  time.Time // latest failure
	next  time.Time // when the last admitted attempt was allowed to start
}

func newLimiter() *limiter {
	return &limiter{threshold: 5, window: time.Minute, base: time.Second, ceiling: 30 * time.Second,
		capacity: 10000, entries: map[string]*failures{}}
}

// delay is the wait imposed after count failures.
func (l *limiter) delay(count int) time.Duration {
	if count < l.threshold {
		return 0
	}
	d := l.base
	for i := l.threshold; i < count && d < l.ceiling; i++ {
		d *= 2
	}
	return min(d, l.ceiling)
}

func (l *limiter) stale(f *failures, now time.Time) bool {
	return now.Sub(f.last) > l.window || (f.count < l.threshold && now.Sub(f.first) > l.window)
}

// admit reserves the next attempt from ip: it returns how long the attempt
// must wait, or ok=false (with the time until a slot frees) when the address
// already has a full queue of waiting attempts.
func (l *limiter) admit(ip string, now time.Time) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.entries[ip]
	if f == nil || l.stale(f, now) {
		return 0, true
	}
	d := l.delay(f.count)
	if d == 0 {
		return 0, true
	}
	start := now
	if f.next.After(start) {
		start = f.next
	}
	start = start.Add(d)
	if wait = start.Sub(now); wait > l.ceiling {
		return f.next.Sub(now), false
	}
	f.next = start
	return wait, true
}

// fail records a failed login from ip and returns the failure count and the
// delay the next attempt will wait (0 while under the threshold).
func (l *limiter) fail(ip string, now time.Time) (int, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.entries[ip]
	if f == nil {
		l.makeRoom(now)
		f = &failures{first: now}
		l.entries[ip] = f
	} else if l.stale(f, now) {
		*f = failures{first: now}
	}
	f.count++
	f.last = now
	return f.count, l.delay(f.count)
}

// makeRoom drops stale entries, or the one idle longest, once the table is full.
func (l *limiter) makeRoom(now time.Time) {
	if len(l.entries) < l.capacity {
		return
	}
	var oldest string
	for ip, f := range l.entries {
		if l.stale(f, now) {
			delete(l.entries, ip)
		} else if oldest == "" || f.last.Before(l.entries[oldest].last) {
			oldest = ip
		}
	}
	if len(l.entries) >= l.capacity {
		delete(l.entries, oldest)
	}
}

func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}
