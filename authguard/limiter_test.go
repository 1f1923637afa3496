package authguard

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fails := func(l *limiter, ip string, n int, at time.Time) {
		for range n {
			l.fail(ip, at)
		}
	}

	t.Run("delay doubles from the fifth failure up to 30s", func(t *testing.T) {
		l := newLimiter()
		want := []time.Duration{0, 0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
		for i, w := range want {
			if _, d := l.fail("a", t0); d != w {
				t.Fatalf("after %d failures: delay %s, want %s", i+1, d, w)
			}
		}
	})

	t.Run("under the threshold nothing waits", func(t *testing.T) {
		l := newLimiter()
		fails(l, "a", 4, t0)
		if w, ok := l.admit("a", t0); w != 0 || !ok {
			t.Fatalf("admit = %s, %v", w, ok)
		}
	})

	t.Run("concurrent attempts are spaced out, then refused", func(t *testing.T) {
		l := newLimiter()
		fails(l, "a", 5, t0)
		var waits []time.Duration
		for {
			w, ok := l.admit("a", t0)
			if !ok {
				if w <= 0 || w > l.ceiling {
					t.Fatalf("refusal says retry in %s", w)
				}
				break
			}
			waits = append(waits, w)
		}
		if len(waits) != 30 || waits[0] != time.Second || waits[29] != 30*time.Second {
			t.Fatalf("waits %v, want 1s, 2s, … 30s", waits)
		}
		if w, ok := l.admit("b", t0); w != 0 || !ok {
			t.Fatal("another address is slowed down too")
		}
	})

	t.Run("failures spread over more than a minute do not count together", func(t *testing.T) {
		l := newLimiter()
		for i := range 10 {
			l.fail("a", t0.Add(time.Duration(i)*20*time.Second))
		}
		if n, d := l.fail("a", t0.Add(200*time.Second)); n > 5 || d > time.Second {
			t.Fatalf("slow failures: count %d, delay %s", n, d)
		}
	})

	t.Run("a quiet minute forgets", func(t *testing.T) {
		l := newLimiter()
		fails(l, "a", 8, t0)
		if w, ok := l.admit("a", t0.Add(61*time.Second)); w != 0 || !ok {
			t.Fatalf("after a quiet minute: admit = %s, %v", w, ok)
		}
	})

	t.Run("memory is bounded", func(t *testing.T) {
		l := newLimiter()
		l.capacity = 100
		for i := range 1000 {
			l.fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256), t0.Add(time.Duration(i)*time.Millisecond))
		}
		if n := l.size(); n > 100 {
			t.Fatalf("%d entries kept, capacity 100", n)
		}
		// The newest addresses are the ones kept.
		if _, ok := l.entries["10.0.3.231"]; !ok {
			t.Fatal("newest address dropped")
		}
	})
}
