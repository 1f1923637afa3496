package testsupport

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Serve is one probe a node answered with its protocol greeting: the node
// was serving at some instant between Dial and Recv.
type Serve struct {
	Node, Proto string
	Dial, Recv  time.Time
}

// Prober polls every node's SFTP and FTP ports, each on its own goroutine,
// and records every greeting. Two nodes serving at once show up as two
// serves of different nodes whose [Dial, Recv] intervals intersect.
type Prober struct {
	mu     sync.Mutex
	serves []Serve
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

// StartProber starts probing the nodes until Stop.
func StartProber(nodes []*Proc, every time.Duration) *Prober {
	return startProber(nodes, every, false)
}

// StartPingProber probes /ping as well as SFTP and FTP: a node answering
// 200 ACTIVE counts as serving (proto "ping"), so two nodes that both
// claim ACTIVE at once show up as an overlap even when their listeners do
// not.
func StartPingProber(nodes []*Proc, every time.Duration) *Prober {
	return startProber(nodes, every, true)
}

func startProber(nodes []*Proc, every time.Duration, ping bool) *Prober {
	p := &Prober{stop: make(chan struct{})}
	for _, n := range nodes {
		probes := []struct {
			proto   string
			serving func() bool
		}{
			{"sftp", func() bool { return Greeting(n.SFTPAddr(), 300*time.Millisecond, "SSH-2.0-Go") }},
			{"ftp", func() bool { return Greeting(n.FTPAddr(), 300*time.Millisecond, "220") }},
		}
		if ping {
			hc := &http.Client{Timeout: 300 * time.Millisecond}
			url := n.AdminURL() + "/ping"
			probes = append(probes, struct {
				proto   string
				serving func() bool
			}{"ping", func() bool { return pingActive(hc, url) }})
		}
		for _, pr := range probes {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.loop(n.Name, pr.proto, pr.serving, every)
			}()
		}
	}
	return p
}

// pingActive reports whether url answered 200 ACTIVE.
func pingActive(hc *http.Client, url string) bool {
	resp, err := hc.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	return err == nil && resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == "ACTIVE"
}

func (p *Prober) loop(node, proto string, serving func() bool, every time.Duration) {
	for {
		dial := time.Now()
		if serving() {
			p.mu.Lock()
			p.serves = append(p.serves, Serve{Node: node, Proto: proto, Dial: dial, Recv: time.Now()})
			p.mu.Unlock()
		}
		select {
		case <-p.stop:
			return
		case <-time.After(every):
		}
	}
}

// Greeting dials addr and reports whether its first line starts with prefix
// within timeout: whether a server is really serving there, not merely a
// kernel accepting connections for a frozen process.
func Greeting(addr string, timeout time.Duration, prefix string) bool {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, prefix)
}

// Stop ends probing and waits for the probe goroutines; it may be called
// more than once.
func (p *Prober) Stop() {
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
}

// Serves returns a copy of what was recorded, ordered by Dial.
func (p *Prober) Serves() []Serve {
	p.mu.Lock()
	out := slices.Clone(p.serves)
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Serve) int { return a.Dial.Compare(b.Dial) })
	return out
}

// Drain returns what was recorded, ordered by Dial, and forgets it: a
// campaign checks each trial apart and keeps its memory bounded.
func (p *Prober) Drain() []Serve {
	p.mu.Lock()
	out := p.serves
	p.serves = nil
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Serve) int { return a.Dial.Compare(b.Dial) })
	return out
}

// Overlap sums the time during which serves of two different nodes
// intersect, and names the first such pair.
func (p *Prober) Overlap() (time.Duration, string) { return OverlapOf(p.Serves()) }

// OverlapOf is Overlap over serves ordered by Dial (from Serves or Drain).
func OverlapOf(serves []Serve) (time.Duration, string) {
	var total time.Duration
	var first string
	for i, a := range serves {
		for _, b := range serves[i+1:] {
			if !b.Dial.Before(a.Recv) {
				break
			}
			if a.Node == b.Node {
				continue
			}
			end := minTime(a.Recv, b.Recv)
			total += end.Sub(b.Dial)
			if first == "" {
				first = a.Node + "/" + a.Proto + " and " + b.Node + "/" + b.Proto + " at " + b.Dial.Format("15:04:05.000")
			}
		}
	}
	return total, first
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// FirstServe returns the first SFTP serve dialled at or after t by a node
// other than except.
func (p *Prober) FirstServe(t time.Time, except string) (Serve, bool) {
	for _, s := range p.Serves() {
		if s.Proto == "sftp" && s.Node != except && !s.Dial.Before(t) {
			return s, true
		}
	}
	return Serve{}, false
}

// LastServe returns the last SFTP serve by node dialled before t.
func (p *Prober) LastServe(node string, t time.Time) (Serve, bool) {
	var last Serve
	var ok bool
	for _, s := range p.Serves() {
		if s.Proto == "sftp" && s.Node == node && s.Dial.Before(t) {
			last, ok = s, true
		}
	}
	return last, ok
}
