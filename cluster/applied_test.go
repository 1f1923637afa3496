package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A waiter is woken by the apply that reaches its index, not before, and
// gives up with its context.
func TestWaitAppliedWakesOnApply(t *testing.T) {
	var a appliedIndex
	a.set(3)
	if err := a.wait(context.Background(), 3); err != nil {
		t.Fatalf("wait for an applied index: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.wait(context.Background(), 5) }()
	a.set(4)
	select {
	case err := <-done:
		t.Fatalf("wait for 5 returned at 4: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	a.set(2) // never goes back
	a.set(5)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait for 5 not woken by the apply of 5")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := a.wait(ctx, 6); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for an index never applied: %v, want the context's deadline", err)
	}
	if i, _ := a.get(); i != 5 {
		t.Fatalf("index %d, want 5", i)
	}
}
