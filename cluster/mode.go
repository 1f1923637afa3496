package cluster

import (
	"sync"
	"time"
)

// Mode is what a node is doing for the cluster, as /ping and the node table
// report it.
type Mode string

// The four modes of the product contract.
const (
	Active     Mode = "ACTIVE"
	Passive    Mode = "PASSIVE"
	Offline    Mode = "OFFLINE"
	Unlicensed Mode = "UNLICENSED"
)

// ModeChange is one transition, with the reason an operator reads in the log.
type ModeChange struct {
	From, To Mode
	Reason   string
	At       time.Time
}

// broker fans mode changes out to subscribers. A slow subscriber loses
// intermediate changes rather than slowing down the fencing path.
type broker struct {
	mu   sync.Mutex
	last Mode
	subs map[chan ModeChange]struct{}
}

// current is the mode last published.
func (b *broker) current() Mode {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

func (b *broker) publish(to Mode, reason string) (ModeChange, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if to == b.last {
		return ModeChange{}, false
	}
	ch := ModeChange{From: b.last, To: to, Reason: reason, At: time.Now()}
	b.last = to
	for s := range b.subs {
		select {
		case s <- ch:
		default:
			// Drop the oldest so the newest is always delivered.
			select {
			case <-s:
			default:
			}
			s <- ch
		}
	}
	return ch, true
}

func (b *broker) subscribe() (<-chan ModeChange, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs == nil {
		b.subs = map[chan ModeChange]struct{}{}
	}
	ch := make(chan ModeChange, 16)
	b.subs[ch] = struct{}{}
	return ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}
