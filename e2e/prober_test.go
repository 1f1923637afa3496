package e2e

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/udmg/gateway/testsupport"
)

// probeEvery is how often each node's /ping, SFTP and FTP ports are polled.
const probeEvery = 100 * time.Millisecond

// probeTimeout bounds one probe: a frozen node does not answer within it.
const probeTimeout = 500 * time.Millisecond

// Greet is one MFT greeting a node sent: it was serving at some instant in
// [Dial, Recv].
type Greet struct {
	Node       int
	Proto      string
	Dial, Recv time.Time
}

// Ping is one /ping answer; Mode is "-" when the node did not answer.
type Ping struct {
	Node       int
	Send, Recv time.Time
	Mode       string
}

// Prober polls every node directly (front network addresses) and records
// every greeting and /ping answer.
type Prober struct {
	nodes  []*Node
	mu     sync.Mutex
	greets []Greet
	pings  [][]Ping
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

// StartProber starts polling until Stop.
func StartProber(nodes []*Node) *Prober {
	p := &Prober{nodes: nodes, pings: make([][]Ping, len(nodes)), stop: make(chan struct{})}
	for _, n := range nodes {
		p.loop(func() { p.ping(n) })
		p.loop(func() { p.greet(n, "sftp", n.sftpAddr(), "SSH-2.0-Go") })
		p.loop(func() { p.greet(n, "ftp", n.ftpAddr(), "220") })
	}
	return p
}

func (p *Prober) loop(probe func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(probeEvery)
		defer t.Stop()
		for {
			probe()
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends polling; it may be called more than once.
func (p *Prober) Stop() {
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
}

func (p *Prober) greet(n *Node, proto, addr, prefix string) {
	dial := time.Now()
	if !testsupport.Greeting(addr, probeTimeout, prefix) {
		return
	}
	g := Greet{Node: n.Idx, Proto: proto, Dial: dial, Recv: time.Now()}
	p.mu.Lock()
	p.greets = append(p.greets, g)
	p.mu.Unlock()
}

var pingClient = &http.Client{
	Timeout:   probeTimeout,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

func (p *Prober) ping(n *Node) {
	send := time.Now()
	mode := "-"
	if resp, err := pingClient.Get(n.pingURL()); err == nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
		resp.Body.Close()
		mode = strings.TrimSpace(string(b))
		if (resp.StatusCode == 200) != (mode == "ACTIVE") {
			mode = fmt.Sprintf("%s/%d", mode, resp.StatusCode)
		}
	}
	pg := Ping{Node: n.Idx, Send: send, Recv: time.Now(), Mode: mode}
	p.mu.Lock()
	p.pings[n.Idx] = append(p.pings[n.Idx], pg)
	p.mu.Unlock()
}

// Modes returns each node's latest /ping answer; "?" when the latest
// answer is older than a second (the probe itself is stuck).
func (p *Prober) Modes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.pings))
	for i, ps := range p.pings {
		out[i] = "?"
		if len(ps) > 0 && time.Since(ps[len(ps)-1].Recv) < time.Second {
			out[i] = ps[len(ps)-1].Mode
		}
	}
	return out
}

// Active returns the index of the only node whose latest /ping says ACTIVE,
// or -1 when there is none or more than one.
func (p *Prober) Active() int {
	idx := -1
	for i, m := range p.Modes() {
		if m == "ACTIVE" {
			if idx >= 0 {
				return -1
			}
			idx = i
		}
	}
	return idx
}

// FirstActive returns when the first /ping answering ACTIVE sent at or
// after from by a node other than except (-1: any node) was sent.
func (p *Prober) FirstActive(from time.Time, except int) (time.Time, bool) {
	for _, pg := range p.PingsBetween(from, time.Now()) {
		if pg.Mode == "ACTIVE" && pg.Node != except {
			return pg.Send, true
		}
	}
	return time.Time{}, false
}

// PingsBetween returns the /ping answers sent in [from, to], in send order.
func (p *Prober) PingsBetween(from, to time.Time) []Ping {
	p.mu.Lock()
	var out []Ping
	for _, ps := range p.pings {
		for _, pg := range ps {
			if !pg.Send.Before(from) && !pg.Send.After(to) {
				out = append(out, pg)
			}
		}
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Ping) int { return a.Send.Compare(b.Send) })
	return out
}

// GreetsBetween returns the greetings dialled in [from, to], in dial order.
func (p *Prober) GreetsBetween(from, to time.Time) []Greet {
	p.mu.Lock()
	var out []Greet
	for _, g := range p.greets {
		if !g.Dial.Before(from) && !g.Dial.After(to) {
			out = append(out, g)
		}
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Greet) int { return a.Dial.Compare(b.Dial) })
	return out
}

// interval is a time span during which a node was seen serving.
type interval struct {
	node       int
	what       string
	start, end time.Time
}

// overlap sums the time during which intervals of two different nodes
// intersect and describes the first such pair.
func overlap(ivs []interval, names func(int) string) (time.Duration, string) {
	slices.SortFunc(ivs, func(a, b interval) int { return a.start.Compare(b.start) })
	var total time.Duration
	var first string
	for i, a := range ivs {
		for _, b := range ivs[i+1:] {
			if !b.start.Before(a.end) {
				break
			}
			if a.node == b.node {
				continue
			}
			total += minTime(a.end, b.end).Sub(b.start)
			if first == "" {
				first = fmt.Sprintf("%s/%s [%s–%s] and %s/%s [%s–%s]",
					names(a.node), a.what, a.start.Format("15:04:05.000"), a.end.Format("15:04:05.000"),
					names(b.node), b.what, b.start.Format("15:04:05.000"), b.end.Format("15:04:05.000"))
			}
		}
	}
	return total, first
}

// GreetOverlap is the time during which two nodes greeted on SFTP or FTP
// in intersecting [dial, recv] intervals (must be 0).
func (p *Prober) GreetOverlap(from, to time.Time) (time.Duration, string) {
	var ivs []interval
	for _, g := range p.GreetsBetween(from, to) {
		ivs = append(ivs, interval{g.Node, g.Proto, g.Dial, g.Recv})
	}
	return overlap(ivs, p.name)
}

// PingOverlap is the same for /ping answering 200 ACTIVE.
func (p *Prober) PingOverlap(from, to time.Time) (time.Duration, string) {
	var ivs []interval
	for _, pg := range p.PingsBetween(from, to) {
		if pg.Mode == "ACTIVE" {
			ivs = append(ivs, interval{pg.Node, "ping", pg.Send, pg.Recv})
		}
	}
	return overlap(ivs, p.name)
}

func (p *Prober) name(i int) string { return p.nodes[i].Name }

// ServedBetween reports the nodes that greeted or answered ACTIVE with a
// probe sent in [from, to].
func (p *Prober) ServedBetween(from, to time.Time) map[int]string {
	out := map[int]string{}
	for _, g := range p.GreetsBetween(from, to) {
		if _, ok := out[g.Node]; !ok {
			out[g.Node] = g.Proto + " greeting at " + g.Recv.Format("15:04:05.000")
		}
	}
	for _, pg := range p.PingsBetween(from, to) {
		if _, ok := out[pg.Node]; !ok && pg.Mode == "ACTIVE" {
			out[pg.Node] = "/ping ACTIVE at " + pg.Recv.Format("15:04:05.000")
		}
	}
	return out
}

// ActiveStarts lists the moments in [from, to] at which a node began
// answering ACTIVE after having answered something else (unanswered probes
// are ignored): each is a lease taken, expected or not.
func (p *Prober) ActiveStarts(from, to time.Time) []string {
	prev := map[int]string{}
	var out []string
	for _, pg := range p.PingsBetween(from, to) {
		if pg.Mode == "-" {
			continue
		}
		if pg.Mode == "ACTIVE" && prev[pg.Node] != "" && prev[pg.Node] != "ACTIVE" {
			out = append(out, p.name(pg.Node)+"@"+pg.Recv.Format("15:04:05.000"))
		}
		prev[pg.Node] = pg.Mode
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
