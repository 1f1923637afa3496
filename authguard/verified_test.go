package authguard

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func quickHash(t *testing.T, password string) []byte {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestVerifyRemembersRightPasswordsOnly: a password bcrypt accepted is
// answered from memory until verifiedFor ends; wrong passwords, a changed
// hash and an unknown account always cost a comparison.
func TestVerifyRemembersRightPasswordsOnly(t *testing.T) {
	g := New(Options{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	g.now = func() time.Time { return now }
	ctx := context.Background()
	hash := quickHash(t, "s3cret-pass")

	verify := func(hash []byte, pw string, want bool, compares, remembered uint64) {
		t.Helper()
		ok, err := g.Verify(ctx, hash, pw)
		if err != nil || ok != want {
			t.Fatalf("Verify(%q) = %v, %v; want %v", pw, ok, err, want)
		}
		if g.Compares() != compares || g.Remembered() != remembered {
			t.Fatalf("after Verify(%q): %d comparisons, %d remembered; want %d, %d", pw, g.Compares(), g.Remembered(), compares, remembered)
		}
	}
	verify(hash, "s3cret-pass", true, 1, 0)
	verify(hash, "s3cret-pass", true, 1, 1)
	verify(hash, "s3cret-pasS", false, 2, 1)
	verify(hash, "", false, 3, 1)
	verify(nil, "s3cret-pass", false, 4, 1)
	// The password changed (or was set again: a new salt): the entry was
	// for the old hash.
	verify(quickHash(t, "other-pass"), "s3cret-pass", false, 5, 1)
	rehashed := quickHash(t, "s3cret-pass")
	verify(rehashed, "s3cret-pass", true, 6, 1)
	verify(rehashed, "s3cret-pass", true, 6, 2)
	// An hour after bcrypt accepted it, it is checked again.
	now = t0.Add(verifiedFor - time.Second)
	verify(hash, "s3cret-pass", true, 6, 3)
	now = t0.Add(verifiedFor)
	verify(hash, "s3cret-pass", true, 7, 3)
	verify(hash, "s3cret-pass", true, 7, 4)

	g.verified.mu.Lock()
	defer g.verified.mu.Unlock()
	for e := range g.verified.seen {
		if strings.Contains(e, "s3cret-pass") {
			t.Fatal("a remembered entry holds the password")
		}
	}
}

// TestVerifiedPasswordNeedsNoSlot: with every heavy-work slot taken by a
// comparison, a remembered password still logs in at once, and a wrong one
// waits for a slot (ErrBusy here).
func TestVerifiedPasswordNeedsNoSlot(t *testing.T) {
	g := New(Options{Concurrency: 1, SlotWait: 50 * time.Millisecond})
	ctx := context.Background()
	hash := quickHash(t, "s3cret-pass")
	if ok, err := g.Verify(ctx, hash, "s3cret-pass"); !ok || err != nil {
		t.Fatalf("first login: %v %v", ok, err)
	}
	inCheck, done := make(chan struct{}), make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		_, _ = g.Check(ctx, func() bool { close(inCheck); <-done; return false })
	}()
	<-inCheck
	defer func() { close(done); <-finished }()
	if ok, err := g.Verify(ctx, hash, "s3cret-pass"); !ok || err != nil {
		t.Fatalf("remembered password with no slot free: %v %v, want in", ok, err)
	}
	if _, err := g.Verify(ctx, hash, "guess"); !errors.Is(err, ErrBusy) {
		t.Fatalf("wrong password with no slot free: %v, want ErrBusy", err)
	}
}
