package testsupport

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Relay forwards the TCP connections it accepts to a target until the
// test ends, counting them: a partner that comes up at an address where
// nothing listened, or a way to see how many connections a client opened
// and to cut them.
type Relay struct {
	Addr string // where it listens
	mu   sync.Mutex
	n    int
	open []net.Conn
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
			go func() { defer wg.Done(); io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		r.Cut()
		wg.Wait()
	})
	return r
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
