package vip

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// testNS is a pair of network namespaces joined by a veth pair: "a" (where
// the holder runs, veth0 10.77.0.1/24) and "b" (a client, 10.77.0.2/24).
type testNS struct{ a, b string }

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newTestNS(t *testing.T) testNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED LOUDLY: the service address tests need root (network namespaces)")
	}
	if err := exec.Command("ip", "netns", "list").Run(); err != nil {
		t.Skipf("SKIPPED LOUDLY: `ip netns` is unavailable here: %v", err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	ns := testNS{a: "vipa-" + id, b: "vipb-" + id}
	for _, n := range []string{ns.a, ns.b} {
		run(t, "ip", "netns", "add", n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
	}
	run(t, "ip", "-n", ns.a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", ns.b)
	run(t, "ip", "-n", ns.a, "addr", "add", "10.77.0.1/24", "dev", "veth0")
	run(t, "ip", "-n", ns.b, "addr", "add", "10.77.0.2/24", "dev", "veth1")
	for _, n := range []string{ns.a, ns.b} {
		run(t, "ip", "-n", n, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", ns.a, "link", "set", "veth0", "up")
	run(t, "ip", "-n", ns.b, "link", "set", "veth1", "up")
	return ns
}

func handleIn(t *testing.T, name string) *netlink.Handle {
	t.Helper()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	return nl
}

func has(t *testing.T, nl *netlink.Handle, dev, ip string) (bool, netlink.Addr) {
	t.Helper()
	link, err := nl.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IP.String() == ip {
			return true, a
		}
	}
	return false, netlink.Addr{}
}

// TestKernelDropsExpiredAddress measures how late after its valid lifetime
// the kernel removes an IPv4 address (check_lifetime in devinet.c), the
// figure Granularity must cover.
func TestKernelDropsExpiredAddress(t *testing.T) {
	ns := newTestNS(t)
	nl := handleIn(t, ns.a)
	link, err := nl.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	var late []time.Duration
	for i := 0; i < 8; i++ {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 77, 0, 100), Mask: net.CIDRMask(24, 32)}, ValidLft: 1, PreferedLft: 1}
		if err := nl.AddrReplace(link, a); err != nil {
			t.Fatal(err)
		}
		added := time.Now()
		for {
			if ok, _ := has(t, nl, "veth0", "10.77.0.100"); !ok {
				break
			}
			if time.Since(added) > 10*time.Second {
				t.Fatal("an address with valid_lft 1 still there after 10s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		late = append(late, time.Since(added)-time.Second)
		// Start the next trial at another phase of the kernel's timer.
		time.Sleep(time.Duration(i) * 130 * time.Millisecond)
	}
	slices.Sort(late)
	t.Logf("removed after valid_lft 1s + %v (min, …, max)", late)
	if worst := late[len(late)-1]; worst > Granularity {
		t.Errorf("the kernel removed an expired address %v late, more than Granularity %v", worst, Granularity)
	}
}

// TestHolder runs the holder inside namespace a (re-running this test
// binary under `ip netns exec`), and checks from outside that the address
// came with a lifetime within the lease, that the client in b learnt the
// holder's MAC from the gratuitous ARP, and that Drop removed it.
func TestHolder(t *testing.T) {
	if os.Getenv("VIP_TEST_INSIDE") != "" {
		holderInside(t)
		return
	}
	ns := newTestNS(t)
	// The client accepts gratuitous ARP for an address it has no entry for.
	run(t, "ip", "netns", "exec", ns.b, "sysctl", "-qw", "net.ipv4.conf.veth1.arp_accept=1")
	cmd := exec.Command("ip", "netns", "exec", ns.a, os.Args[0], "-test.run=^TestHolder$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "VIP_TEST_INSIDE=1")
	out, err := cmd.CombinedOutput()
	t.Logf("inside %s:\n%s", ns.a, out)
	if err != nil || !strings.Contains(string(out), "--- PASS: TestHolder") {
		t.Fatalf("holder inside the namespace: %v", err)
	}

	nla, nlb := handleIn(t, ns.a), handleIn(t, ns.b)
	veth0, err := nla.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	neigh, err := nlb.NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var mac net.HardwareAddr
	for _, n := range neigh {
		if n.IP.String() == "10.77.0.100" {
			mac = n.HardwareAddr
		}
	}
	if mac.String() != veth0.Attrs().HardwareAddr.String() {
		t.Errorf("client's ARP entry for the service address: %q, want the holder's MAC %s (gratuitous ARP not received)", mac, veth0.Attrs().HardwareAddr)
	}
}

func holderInside(t *testing.T) {
	nl, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New("10.77.0.100/24", "nosuch0", nil); err == nil || !strings.Contains(err.Error(), "[vip] Interface nosuch0") {
		t.Errorf("New on a missing interface = %v, want an error naming [vip] Interface", err)
	}
	h, err := New("10.77.0.100/24", "veth0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Hold(900*time.Millisecond, time.Now()); err != ErrLeaseTooShort {
		t.Errorf("Hold(0.9s) = %v, want ErrLeaseTooShort", err)
	}
	if ok, _ := has(t, nl, "veth0", "10.77.0.100"); ok {
		t.Fatal("a refused Hold left the address")
	}
	if err := h.Hold(1990*time.Millisecond, time.Now()); err != nil {
		t.Fatal(err)
	}
	ok, a := has(t, nl, "veth0", "10.77.0.100")
	if !ok || a.ValidLft != 1 || a.PreferedLft != 1 {
		t.Fatalf("after Hold(1.99s): held %v, valid_lft %d preferred_lft %d; want 1s (whole seconds within the lease)", ok, a.ValidLft, a.PreferedLft)
	}
	if left := fenceLeft(t); left > 1990*time.Millisecond || left < 1500*time.Millisecond {
		t.Errorf("after Hold(1.99s) the fence is open for %s more, want up to the lease's end", left)
	}
	// Renewals keep it for longer than any one lifetime.
	start := time.Now()
	for time.Since(start) < 2500*time.Millisecond {
		time.Sleep(400 * time.Millisecond)
		if err := h.Refresh(1990*time.Millisecond, time.Now()); err != nil {
			t.Fatal(err)
		}
		if ok, _ := has(t, nl, "veth0", "10.77.0.100"); !ok {
			t.Fatalf("address gone %v after Hold despite refreshes", time.Since(start))
		}
	}
	// Its tables removed under it (nft flush ruleset), the fence is made
	// again at the next refresh.
	run(t, "nft", "delete", "table", "ip", FenceTable)
	if err := h.Refresh(1990*time.Millisecond, time.Now()); err != nil {
		t.Fatalf("Refresh after the fence's table was removed: %v", err)
	}
	if left := fenceLeft(t); left < 1500*time.Millisecond {
		t.Errorf("after the fence was made again it is open for %s, want up to the lease's end", left)
	}
	// Changed under it by someone else, with no renewal to come (the node
	// killed right after a firewall reload), the fence is made again at
	// once: whole, and open until the lease's end.
	for _, change := range [][]string{
		{"flush", "ruleset"},
		{"flush", "table", "arp", FenceTable},                   // its rules gone, its set kept
		{"insert", "rule", "ip", FenceTable, "input", "accept"}, // a rule before the fence's
		{"delete", "set", "ip", FenceTable, "lease"},            // refused while a rule uses it: nothing to mend
	} {
		if err := h.Refresh(1990*time.Millisecond, time.Now()); err != nil {
			t.Fatal(err)
		}
		changed := time.Now()
		if out, err := exec.Command("nft", change...).CombinedOutput(); err != nil {
			t.Logf("nft %s: %v: %s", strings.Join(change, " "), err, out)
		}
		committed := time.Now() // nft returns once its change is in
		for !fenceWhole() {
			if time.Since(changed) > time.Second {
				t.Fatalf("nft %s: the fence was not made again within 1s:\n%s", strings.Join(change, " "), run(t, "nft", "list", "ruleset"))
			}
			time.Sleep(time.Millisecond)
		}
		took := time.Since(changed)
		if left := fenceLeft(t); left < 1200*time.Millisecond || left > 1990*time.Millisecond-took {
			t.Errorf("nft %s: made again, open for %s, want until the lease's end (%s)", strings.Join(change, " "), left, 1990*time.Millisecond-took)
		}
		t.Logf("nft %s: fence seen whole and open again %s after nft returned", strings.Join(change, " "), time.Since(committed).Round(time.Millisecond))
	}
	// A lease about to end keeps the shorter lifetime it has.
	if err := h.Refresh(500*time.Millisecond, time.Now()); err != nil {
		t.Errorf("Refresh(0.5s) = %v, want nil (nothing to do)", err)
	}
	// A renewal read long before the address is set must not hand the
	// kernel a lifetime that outlasts the lease.
	if err := h.Refresh(1990*time.Millisecond, time.Now().Add(-1500*time.Millisecond)); err != nil {
		t.Errorf("Refresh with 0.49s left = %v, want nil (keeps the shorter lifetime)", err)
	}
	if err := h.Drop(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := has(t, nl, "veth0", "10.77.0.100"); ok {
		t.Fatal("Drop left the address")
	}
	if left := fenceLeft(t); left != 0 {
		t.Errorf("Drop left the fence open for %s", left)
	}
	if err := h.Refresh(1990*time.Millisecond, time.Now()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := has(t, nl, "veth0", "10.77.0.100"); ok {
		t.Fatal("Refresh after Drop added the address again")
	}
	// Left over by a previous run: New removes it.
	if err := h.Hold(1990*time.Millisecond, time.Now()); err != nil {
		t.Fatal(err)
	}
	next, err := New("10.77.0.100/24", "veth0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := has(t, nl, "veth0", "10.77.0.100"); ok {
		t.Error("New left a stale copy of the address")
	}
	if left := fenceLeft(t); left != 0 {
		t.Errorf("New left the fence of an earlier run open for %s", left)
	}
	if err := h.Drop(); err != nil {
		t.Errorf("Drop of an address already removed = %v, want nil", err)
	}
	for _, h := range []*Holder{h, next, next} { // twice: a second Close does nothing
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if c, err := nftables.New(); err == nil {
		if tables, err := c.ListTables(); err != nil || slices.ContainsFunc(tables, func(tb *nftables.Table) bool { return tb.Name == FenceTable }) {
			t.Errorf("Close left the fence's tables (%v)", err)
		}
	}
	// A refused probe names the setting and the capability.
	if os.Getenv("VIP_TEST_NOCAP") == "" {
		cmd := exec.Command("setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", os.Args[0], "-test.run=^TestHolder$", "-test.count=1")
		cmd.Env = append(os.Environ(), "VIP_TEST_NOCAP=1")
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "[vip] Address 10.77.0.100/24: this process may not change the addresses of veth0 (needs CAP_NET_ADMIN") {
			t.Errorf("without CAP_NET_ADMIN:\n%s\nwant the [vip] Address and CAP_NET_ADMIN named", out)
		}
	}
}

// fenceLeft is how long the fence of this namespace still lets the
// address be answered for (0: closed), in both tables.
func fenceLeft(t *testing.T) time.Duration {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	var left []time.Duration
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyARP} {
		set, err := c.GetSetByName(&nftables.Table{Family: fam, Name: FenceTable}, "lease")
		if err != nil {
			t.Fatalf("fence table %s (family %d): %v", FenceTable, fam, err)
		}
		elems, err := c.GetSetElements(set)
		if err != nil {
			t.Fatal(err)
		}
		var l time.Duration
		for _, e := range elems {
			l = max(l, e.Expires)
		}
		left = append(left, l)
	}
	if left[0] != left[1] && (left[0] == 0 || left[1] == 0) {
		t.Errorf("the fence's ip and arp tables disagree: open for %s and %s", left[0], left[1])
	}
	return max(left[0], left[1])
}

// fenceWhole reports, from nft's own listing, whether both fence tables
// are there with their two dropping rules, no other rule, and the address
// in their set.
func fenceWhole() bool {
	for _, fam := range []string{"ip", "arp"} {
		out, err := exec.Command("nft", "list", "table", fam, FenceTable).Output()
		if err != nil || strings.Count(string(out), " drop\n") != 2 || !strings.Contains(string(out), "10.77.0.100 timeout") {
			return false
		}
		for line := range strings.Lines(string(out)) {
			if strings.HasSuffix(line, " accept\n") && !strings.Contains(line, "policy") {
				return false
			}
		}
	}
	return true
}

func init() {
	// Inside setpriv without CAP_NET_ADMIN: print what New says, and stop.
	if os.Getenv("VIP_TEST_NOCAP") != "" {
		_, err := New("10.77.0.100/24", "veth0", nil)
		os.Stdout.WriteString("New: " + errString(err) + "\n")
		os.Exit(0)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
