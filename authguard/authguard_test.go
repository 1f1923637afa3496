package authguard

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestPasswordsOver72Bytes(t *testing.T) {
	pw72 := strings.Repeat("p", MaxPasswordBytes)
	if err := ValidatePassword("password", pw72, 8); err != nil {
		t.Fatalf("72 bytes refused: %v", err)
	}
	err := ValidatePassword("password", pw72+"x", 8)
	if err == nil || !strings.Contains(err.Error(), "password too long") || !strings.Contains(err.Error(), "73 bytes") {
		t.Fatalf("73 bytes: %v, want an error naming the field and the length", err)
	}
	if _, err := Hash("[admin] InitialPassword", pw72+"x"); err == nil || !strings.Contains(err.Error(), "[admin] InitialPassword") {
		t.Fatalf("Hash(73 bytes) = %v, want an error naming the key", err)
	}

	h, err := Hash("password", pw72)
	if err != nil {
		t.Fatal(err)
	}
	if !Matches(h, pw72) {
		t.Fatal("the 72-byte password does not match its hash")
	}
	// bcrypt itself lets "72 bytes + anything" in: the trap Matches closes.
	if bcrypt.CompareHashAndPassword(h, []byte(pw72+"anything")) != nil {
		t.Fatal("bcrypt no longer truncates: this test's premise changed")
	}
	for _, extra := range []string{"x", "anything", strings.Repeat("y", 100)} {
		if Matches(h, pw72+extra) {
			t.Fatalf("72 bytes + %q logs in", extra)
		}
	}
	if Matches(nil, "whatever") {
		t.Fatal("an empty hash matched")
	}
}

func TestGuardCountsAccountsAcrossAddresses(t *testing.T) {
	g := New(Options{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return t0 }
	// Five failures on "admin", each from another address.
	for i := range 5 {
		g.Failed("10.0.0."+string(rune('1'+i)), "admin")
	}
	if w, err := g.Admit("10.0.0.9", "admin"); err != nil || w != time.Second {
		t.Fatalf("a fresh address guessing at admin: wait %s, %v; want 1s", w, err)
	}
	if w, err := g.Admit("10.0.0.9", "bob"); err != nil || w != 0 {
		t.Fatalf("the same fresh address on another account: wait %s, %v; want none", w, err)
	}
	// Five failures from one address on five accounts slow that address.
	for i := range 5 {
		g.Failed("10.0.1.1", "user"+string(rune('a'+i)))
	}
	if w, err := g.Admit("10.0.1.1", "carol"); err != nil || w != time.Second {
		t.Fatalf("the guessing address on a fresh account: wait %s, %v; want 1s", w, err)
	}
	// An address that logged in as admin before is not slowed by the
	// storm on admin (only by its own failures).
	g.Succeeded("10.0.3.3", "admin")
	if w, err := g.Admit("10.0.3.3", "admin"); err != nil || w != 0 {
		t.Fatalf("a known address of admin during the storm: wait %s, %v; want none", w, err)
	}
	// A full queue is refused with a retry time.
	var te *ThrottledError
	for range 100 {
		if _, err := g.Admit("10.0.2.2", "admin"); errors.As(err, &te) {
			break
		}
	}
	if te == nil || te.RetryAfter <= 0 || !strings.Contains(te.Error(), "admin") {
		t.Fatalf("no refusal once the account's queue is full: %v", te)
	}
}

func TestGuardBoundsComparisons(t *testing.T) {
	g := New(Options{Concurrency: 2, SlotWait: 200 * time.Millisecond})
	var running, peak atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = g.Check(context.Background(), func() bool {
				n := running.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				<-release
				running.Add(-1)
				return true
			})
		}()
	}
	for running.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	// Both slots are taken: a third waits its bound, then is refused.
	start := time.Now()
	if _, err := g.Check(context.Background(), func() bool { return true }); !errors.Is(err, ErrBusy) {
		t.Fatalf("third comparison: %v, want ErrBusy", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("refused after %s, before its wait bound", d)
	}
	close(release)
	wg.Wait()
	if peak.Load() != 2 {
		t.Fatalf("peak concurrency %d, want 2", peak.Load())
	}
	if ok, err := g.Check(context.Background(), func() bool { return true }); !ok || err != nil {
		t.Fatalf("after the slots freed: %v %v", ok, err)
	}
}
