package vip_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// firstHeldAfter is when a node other than old was first read holding the
// address after t (the end of that reading: a bound from above).
func (p *addrProber) firstHeldAfter(old int, t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first time.Time
	for i, s := range p.samples {
		if i == old {
			continue
		}
		for _, x := range s {
			if x.held && x.t0.After(t) {
				if first.IsZero() || x.t1.Before(first) {
					first = x.t1
				}
				break
			}
		}
	}
	return first, !first.IsZero()
}

// holding is how many nodes' latest readings hold the address.
func (p *addrProber) holding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.samples {
		if len(s) > 0 && s[len(s)-1].held {
			n++
		}
	}
	return n
}

// twoHolders is how long, between from and to, at least two nodes' latest
// readings said they held the address.
func (p *addrProber) twoHolders(from, to time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	type ev struct {
		at   time.Time
		node int
		held bool
	}
	var evs []ev
	for i, s := range p.samples {
		for _, x := range s {
			evs = append(evs, ev{x.t0, i, x.held})
		}
	}
	sort.Slice(evs, func(a, b int) bool { return evs[a].at.Before(evs[b].at) })
	state := make([]bool, len(p.samples))
	var total time.Duration
	var last time.Time
	for _, e := range evs {
		n := 0
		for _, h := range state {
			if h {
				n++
			}
		}
		if n >= 2 && !last.IsZero() {
			lo, hi := maxTime(last, from), minTime(e.at, to)
			if hi.After(lo) {
				total += hi.Sub(lo)
			}
		}
		state[e.node], last = e.held, e.at
	}
	return total
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1)*p + 0.5)
	return s[i]
}

func trials(t *testing.T) int {
	n := 20
	if v := os.Getenv("VIPTEST_TRIALS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	return n
}

// TestSideBySideKeepalived measures, on the same topology and with the same
// fault (kill -9 of whoever holds the address), keepalived from Debian with
// the seed's keepalived.conf (advert_int 1, VIP on the bridge) against the
// gateway's own service address: failover time (kill to another node read
// holding it) and time with two holders. It is a measurement: run it with
// VIPTEST_SIDEBYSIDE=1 (VIPTEST_TRIALS=20 by default; VIPTEST_ONLY=gateway
// or keepalived runs one side).
func TestSideBySideKeepalived(t *testing.T) {
	if os.Getenv("VIPTEST_SIDEBYSIDE") == "" {
		t.Skip("a measurement of several minutes: set VIPTEST_SIDEBYSIDE=1")
	}
	keepalived, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: keepalived is not installed (make deps installs it)")
	}
	n := trials(t)

	only := os.Getenv("VIPTEST_ONLY")
	t.Run("keepalived", func(t *testing.T) {
		if only != "" && only != "keepalived" {
			t.Skip("VIPTEST_ONLY=" + only)
		}
		l := newLAN(t, 3)
		prober := startAddrProber(t, l)
		dir := t.TempDir()
		procs := make([]*exec.Cmd, 3)
		start := func(i int) {
			conf := filepath.Join(dir, fmt.Sprintf("keepalived%d.conf", i))
			state, prio := "BACKUP", 254-i
			if i == 0 {
				state, prio = "MASTER", 255
			}
			// The seed's keepalived.conf, on the bridge, without the
			// HAProxy check (no HAProxy here).
			os.WriteFile(conf, []byte(fmt.Sprintf(`vrrp_instance VI_1 {
	state %s
	interface eth0
	virtual_router_id 51
	priority %d
	advert_int 1
	authentication {
		auth_type PASS
		auth_pass 12345
	}
	virtual_ipaddress {
		%s/24 dev eth0
	}
}
`, state, prio, l.vip())), 0o644)
			log, _ := os.OpenFile(filepath.Join(dir, fmt.Sprintf("keepalived%d.log", i)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			cmd := exec.Command("ip", "netns", "exec", l.nodes[i], keepalived, "--dont-fork", "--log-console", "--vrrp",
				"-f", conf, "-p", filepath.Join(dir, fmt.Sprintf("k%d.pid", i)), "-r", filepath.Join(dir, fmt.Sprintf("v%d.pid", i)))
			cmd.Stdout, cmd.Stderr = log, log
			// Its own process group: kill -9 takes the VRRP child with it
			// (a node that dies), not only the parent.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			procs[i] = cmd
			go func() { cmd.Wait(); log.Close() }()
		}
		t.Cleanup(func() {
			for _, c := range procs {
				if c != nil && c.Process != nil {
					syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				}
			}
		})
		for i := range procs {
			start(i)
		}
		measure(t, n, prober, func(i int) { syscall.Kill(-procs[i].Process.Pid, syscall.SIGKILL); procs[i].Wait() }, func(i int) {
			// A keepalived killed with -9 leaves its address behind: the
			// next one started on that node removes it (or keeps it as
			// MASTER). Before that it is a second holder.
			start(i)
		}, func() bool { return prober.holding() == 1 })
	})

	t.Run("gateway", func(t *testing.T) {
		if only != "" && only != "gateway" {
			t.Skip("VIPTEST_ONLY=" + only)
		}
		l := newLAN(t, 3)
		prober := startAddrProber(t, l)
		// VIPTEST_ENV: settings of the gateways' own, e.g. a shorter
		// Deadline ("UDMG_CONTROLLER_HEARTBEAT=250ms UDMG_CONTROLLER_DEADLINE=1250ms").
		gws := startGateways(t, l, strings.Fields(os.Getenv("VIPTEST_ENV"))...)
		bin := ts.ServerBinary(t)
		measure(t, n, prober, func(i int) { gws[i].signal(syscall.SIGKILL); gws[i].wait(10 * time.Second) },
			func(i int) { gws[i].start(t, bin) },
			func() bool {
				h := prober.holder()
				if prober.holding() != 1 || !gws[h].active() {
					return false
				}
				for _, g := range gws { // every node back and answering
					if _, err := g.api().Do("GET", "/ping", nil); err != nil {
						return false
					}
				}
				return true
			})
	})
}

// measure kills the holder n times: failover is kill → another node read
// holding the address; two holders is counted from the kill until the
// killed node is restarted and the address is held by one node again.
func measure(t *testing.T, n int, p *addrProber, kill, restart func(int), settled func() bool) {
	var failover, overlap []time.Duration
	for k := 0; k < n; k++ {
		if !ts.Eventually(60*time.Second, settled) {
			t.Fatalf("trial %d: no single settled holder within 60s", k)
		}
		time.Sleep(time.Second) // let the settled holder renew a few times
		old := p.holder()
		killed := time.Now()
		kill(old)
		var at time.Time
		if !ts.Eventually(30*time.Second, func() bool { var ok bool; at, ok = p.firstHeldAfter(old, killed); return ok }) {
			t.Fatalf("trial %d: nobody took the address over within 30s", k)
		}
		// Observe 5 s after the takeover, then bring the node back.
		time.Sleep(5 * time.Second)
		restart(old)
		if !ts.Eventually(60*time.Second, settled) {
			t.Fatalf("trial %d: no settled holder after the restart", k)
		}
		time.Sleep(2 * time.Second)
		failover = append(failover, at.Sub(killed))
		overlap = append(overlap, p.twoHolders(killed, time.Now()))
	}
	var total time.Duration
	for _, o := range overlap {
		total += o
	}
	withOverlap := 0
	for _, o := range overlap {
		if o > 0 {
			withOverlap++
		}
	}
	t.Logf("%d kill -9 trials: failover median %v p99 %v max %v; two holders in %d trials, %v in all (median %v, max %v); %d readings of a fenced node still with the address while another held it",
		n, percentile(failover, 0.5).Round(time.Millisecond), percentile(failover, 0.99).Round(time.Millisecond), slices.Max(failover).Round(time.Millisecond),
		withOverlap, total.Round(time.Millisecond), percentile(overlap, 0.5).Round(time.Millisecond), slices.Max(overlap).Round(time.Millisecond), p.inert())
}
