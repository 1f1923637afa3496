package cluster

import (
	"testing"
	"time"
)

// TestLoginDedup: a failure gossiped twice counts once; a restarted node (a
// new origin) counts from its first number again; numbers far behind the
// newest are taken as seen, so the memory stays bounded.
func TestLoginDedup(t *testing.T) {
	var d loginDedup
	now := time.Now()
	if !d.first("n1/a", 1, now) || d.first("n1/a", 1, now) {
		t.Fatal("the same message counted twice, or not at all")
	}
	if !d.first("n1/b", 1, now) {
		t.Fatal("a restarted node's first message taken as a copy")
	}
	for seq := uint64(2); seq <= 3*dedupWindow; seq++ {
		if !d.first("n1/a", seq, now) {
			t.Fatalf("message %d taken as a copy", seq)
		}
	}
	if n := len(d.origins["n1/a"].seen); n > 2*dedupWindow+1 {
		t.Fatalf("%d numbers remembered", n)
	}
	if d.first("n1/a", 5, now) {
		t.Fatal("a copy far behind the newest counted again")
	}
	if !d.first("n2/x", 1, now.Add(originIdle+time.Second)) || d.origins["n1/b"] != nil {
		t.Fatal("an idle origin is not forgotten")
	}
}
