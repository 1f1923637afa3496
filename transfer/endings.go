package transfer

import "sync"

// endings wakes the TRANSFER tasks waiting for their child: the engine
// signals a transfer's id whenever a worker of it ended (finish), so that
// the parent looks at its child then rather than at its next poll.
type endings struct {
	mu sync.Mutex
	ch map[uint64]chan struct{}
}

// watch is closed at the next signal of id. Take it before looking at the
// state, so that an end committed in between is not missed.
func (n *endings) watch(id uint64) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = map[uint64]chan struct{}{}
	}
	c, ok := n.ch[id]
	if !ok {
		c = make(chan struct{})
		n.ch[id] = c
	}
	return c
}

// signal wakes the watchers of id.
func (n *endings) signal(id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.ch[id]; ok {
		close(c)
		delete(n.ch, id)
	}
}

// forget drops the watch of id a waiter no longer needs (its child ended
// without a worker of this engine, or it was cut).
func (n *endings) forget(id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.ch, id)
}
