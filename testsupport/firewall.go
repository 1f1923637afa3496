package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Firewall cuts nodes' Raft and gossip traffic with iptables while clients
// still reach their admin, SFTP and FTP ports. Each Firewall has its own
// pair of chains (jumped to from OUTPUT and INPUT), so Heal and cleanup
// flush only this test's rules. Rules on OUTPUT match the sending node by
// its uid (-m owner --uid-owner; nodes must run with Options.UIDs), rules on
// INPUT match the receiving node by destination address and port.
type Firewall struct {
	out, in string // chain names

	mu     sync.Mutex
	closed bool
}

// Direction says which way a cut drops traffic.
type Direction int

// Directions of a cut, seen from the isolated node.
const (
	Both     Direction = iota // symmetric partition
	Outbound                  // the node's packets to the others are dropped
	Inbound                   // the others' packets to the node are dropped
)

func (d Direction) String() string {
	return [...]string{"both", "out", "in"}[d]
}

// FirewallAvailable says why the firewall cannot be used here ("" when it can).
func FirewallAvailable() string {
	if os.Geteuid() != 0 {
		return "iptables needs root"
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return "iptables is missing"
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		return "setpriv (util-linux) is missing: nodes cannot run as their own uid"
	}
	if err := run("iptables", "-w", "-S", "OUTPUT"); err != nil {
		return "iptables does not answer: " + err.Error()
	}
	return ""
}

var firewallSeq atomic.Int32

// NewFirewall creates this test's chains; t.Cleanup removes them.
func NewFirewall(t testing.TB) *Firewall {
	t.Helper()
	f, err := OpenFirewall()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("firewall: %v", err)
		}
	})
	return f
}

// OpenFirewall is NewFirewall without a test: the caller must Close it.
func OpenFirewall() (*Firewall, error) {
	sweepStaleChains()
	base := fmt.Sprintf("UDMGT-%d-%d", os.Getpid(), firewallSeq.Add(1))
	f := &Firewall{out: base + "-O", in: base + "-I"}
	for _, step := range [][]string{
		{"-N", f.out}, {"-N", f.in},
		{"-I", "OUTPUT", "1", "-j", f.out}, {"-I", "INPUT", "1", "-j", f.in},
	} {
		if err := iptables(step...); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// sweepStaleChains removes the chains of test processes that are gone
// (killed before their cleanup ran), so that their cuts cannot outlive them.
func sweepStaleChains() {
	out, err := exec.Command("iptables", "-w", "-S").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		chain, ok := strings.CutPrefix(line, "-N UDMGT-")
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(chain, "-")
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		name := "UDMGT-" + chain
		hook := "OUTPUT"
		if strings.HasSuffix(name, "-I") {
			hook = "INPUT"
		}
		iptables("-D", hook, "-j", name)
		iptables("-F", name)
		iptables("-X", name)
	}
}

func iptables(args ...string) error { return run("iptables", append([]string{"-w"}, args...)...) }

// clusterPorts are the node-to-node ports a cut drops: Raft (TCP) and
// gossip (TCP and UDP).
var clusterPorts = []struct {
	proto string
	port  int
}{{"tcp", RaftPort}, {"tcp", GossipPort}, {"udp", GossipPort}}

// Block drops src's packets to dst's Raft and gossip ports (src must run
// as its own uid).
func (f *Firewall) Block(src, dst *Proc) error {
	if src.UID == 0 {
		return fmt.Errorf("firewall: %s runs as root; start the cluster with Options.UIDs", src.Name)
	}
	for _, cp := range clusterPorts {
		if err := iptables("-A", f.out, "-m", "owner", "--uid-owner", fmt.Sprint(src.UID),
			"-d", dst.IP, "-p", cp.proto, "--dport", fmt.Sprint(cp.port), "-j", "DROP"); err != nil {
			return err
		}
	}
	return nil
}

// BlockInbound drops every packet to dst's Raft and gossip ports.
func (f *Firewall) BlockInbound(dst *Proc) error {
	for _, cp := range clusterPorts {
		if err := iptables("-A", f.in, "-d", dst.IP, "-p", cp.proto, "--dport", fmt.Sprint(cp.port), "-j", "DROP"); err != nil {
			return err
		}
	}
	return nil
}

// Isolate cuts p from the others' Raft and gossip in direction d; clients
// still reach every port of p.
func (f *Firewall) Isolate(p *Proc, others []*Proc, d Direction) error {
	if d == Both || d == Outbound {
		for _, o := range others {
			if o == p {
				continue
			}
			if err := f.Block(p, o); err != nil {
				return err
			}
		}
	}
	if d == Both || d == Inbound {
		return f.BlockInbound(p)
	}
	return nil
}

// Heal removes every rule of this firewall (its chains stay, empty).
func (f *Firewall) Heal() error {
	if err := iptables("-F", f.out); err != nil {
		return err
	}
	return iptables("-F", f.in)
}

// Close removes the jumps and the chains; it may be called more than once.
func (f *Firewall) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var first error
	for _, step := range [][]string{
		{"-D", "OUTPUT", "-j", f.out}, {"-D", "INPUT", "-j", f.in},
		{"-F", f.out}, {"-F", f.in}, {"-X", f.out}, {"-X", f.in},
	} {
		if err := iptables(step...); err != nil && first == nil {
			first = err
		}
	}
	return first
}
