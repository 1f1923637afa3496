package testsupport

import (
	"net"
	"sync"
	"testing"
)

// Relay forwards the TCP connections it accepts to a target until the
// test ends, counting them: a partner that comes up at an address where
// nothing listened, or a way to see how many connections a client opened
// and to cut them.
type Relay struct {
	Addr    string // where it listens
	mu      sync.Mutex
	n       int
	open    []net.Conn
	stalled chan struct{} // closed when a Stall ends; nil: forwarding
}

// StartRelay listens on addr ("127.0.0.1:0": any free port) and forwards
// each connection to target.
func StartRelay(t testing.TB, addr, target string) *Relay {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	r := &Relay{Addr: l.Addr().String()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			r.mu.Lock()
			r.n++
			r.open = append(r.open, in, out)
			r.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); r.pipe(out, in) }()
			go func() { defer wg.Done(); r.pipe(in, out) }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		r.Resume()
		r.Cut()
		wg.Wait()
	})
	return r
}

// pipe copies src to dst until either ends, holding what it read while
// the relay is stalled.
func (r *Relay) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			gate := r.stalled
			r.mu.Unlock()
			if gate != nil {
				<-gate
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Stall stops forwarding without closing anything, as a network that
// drops every packet: both ends wait on each other until Resume (or the
// test's end).
func (r *Relay) Stall() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stalled == nil {
		r.stalled = make(chan struct{})
	}
}

// Resume ends a Stall: what was held is forwarded.
func (r *Relay) Resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stalled != nil {
		close(r.stalled)
		r.stalled = nil
	}
}

// Accepted is how many connections were forwarded so far.
func (r *Relay) Accepted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Cut closes the connections forwarded so far, both ways.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.open {
		c.Close()
	}
	r.open = nil
}
