package cluster

import (
	"context"
	"fmt"
	"sync"
)

// appliedIndex is the index of the last log entry the state machine has
// applied, with a channel closed at each advance: readers that must see a
// given write (a follower answering a write it forwarded) wait on it
// instead of polling. raft.Raft.AppliedIndex is not that index: Raft
// advances it when it hands entries to the FSM goroutine, before they are
// applied.
type appliedIndex struct {
	mu      sync.Mutex
	index   uint64
	advance chan struct{} // closed and replaced when index grows
}

// set records that the machine has applied every entry up to index.
func (a *appliedIndex) set(index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if index <= a.index {
		return
	}
	a.index = index
	if a.advance != nil {
		close(a.advance)
		a.advance = nil
	}
}

// get is the last applied index and a channel closed once it grows.
func (a *appliedIndex) get() (uint64, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.advance == nil {
		a.advance = make(chan struct{})
	}
	return a.index, a.advance
}

// wait returns once index is applied, or with ctx's error.
func (a *appliedIndex) wait(ctx context.Context, index uint64) error {
	for {
		got, advanced := a.get()
		if got >= index {
			return nil
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return fmt.Errorf("wait for log index %d (applied %d): %w", index, got, ctx.Err())
		}
	}
}

// AppliedIndex is the index of the last log entry this node's state
// machine has applied: once it reaches the index a leader reported after a
// write, reads on this node include that write.
func (n *Node) AppliedIndex() uint64 {
	i, _ := n.applied.get()
	return i
}

// WaitApplied returns once this node's state machine has applied the log
// up to index (woken by each apply, not polling), or with ctx's error.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	return n.applied.wait(ctx, index)
}
