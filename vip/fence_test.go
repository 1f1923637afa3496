package vip

import (
	"net"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNS runs f on a thread of its own inside namespace name; sockets made
// there stay in that namespace. The thread is not handed back to the
// runtime (it ends with the goroutine), so no other goroutine ever runs in
// the namespace by mistake.
func inNS(t *testing.T, name string, f func()) {
	t.Helper()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := netns.Set(h); err != nil {
			done <- err
			return
		}
		f()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestFenceEndsWithTheLease opens the fence of namespace a for a lease and
// then leaves it alone, as a killed or stopped holder would: from namespace
// b, no TCP connection to the service address and no ARP request for it
// may be answered once the timeout is over, while the address itself is
// still there (the kernel holds it without a lifetime here); before that,
// both are. Close stops both at once.
func TestFenceEndsWithTheLease(t *testing.T) {
	ns := newTestNS(t)
	nla := handleIn(t, ns.a)
	veth0, err := nla.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := nla.AddrAdd(veth0, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 77, 0, 100), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	// The client knows the holder's MAC for good: its connections test the
	// IP rules alone, its ARP requests (probe) the ARP rules.
	run(t, "ip", "-n", ns.b, "neigh", "replace", "10.77.0.100", "lladdr", veth0.Attrs().HardwareAddr.String(), "dev", "veth1", "nud", "permanent")
	var ln net.Listener
	var f *fence
	var ferr error
	inNS(t, ns.a, func() {
		ln, ferr = net.Listen("tcp", "10.77.0.100:2222")
		if ferr == nil {
			f, ferr = newFence(netip.MustParseAddr("10.77.0.100"))
		}
	})
	if ferr != nil {
		t.Fatal(ferr)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// Every call of the fence opens its own netlink socket: in a.
	in := func(op func() error) error {
		var err error
		inNS(t, ns.a, func() { err = op() })
		return err
	}

	// Before any open: nothing answers.
	if n := probe(t, ns.b, 300*time.Millisecond); n.tcp > 0 || n.arp > 0 {
		t.Fatalf("the fence answered for the address before it was opened: %+v", n)
	}
	var late []time.Duration
	for _, lease := range []time.Duration{400 * time.Millisecond, 700 * time.Millisecond, time.Second, 1300 * time.Millisecond} {
		opened := time.Now()
		if err := in(func() error { return f.open(lease) }); err != nil {
			t.Fatal(err)
		}
		end := time.Now().Add(lease) // the fence ends before this
		var lastOK time.Time
		inNS(t, ns.b, func() {
			for time.Since(opened) < lease+300*time.Millisecond {
				start := time.Now()
				c, err := net.DialTimeout("tcp", "10.77.0.100:2222", 100*time.Millisecond)
				if err != nil {
					continue
				}
				c.Close()
				if start.After(end) {
					t.Errorf("lease %s: a connection begun %s after the lease's end was answered", lease, start.Sub(end).Round(time.Millisecond))
				}
				lastOK = start
				time.Sleep(time.Millisecond)
			}
		})
		if lastOK.IsZero() {
			t.Fatalf("lease %s: no connection answered while the fence was open", lease)
		}
		late = append(late, lastOK.Sub(end))
		if n := probe(t, ns.b, 300*time.Millisecond); n.tcp > 0 || n.arp > 0 {
			t.Errorf("lease %s: answered after its end: %+v", lease, n)
		}
		if ok, _ := has(t, nla, "veth0", "10.77.0.100"); !ok {
			t.Fatal("the address itself went away: the test shows nothing")
		}
	}
	slices.Sort(late)
	t.Logf("last connection answered %v after the lease's end (negative: before it; min … max)", late)

	if err := in(func() error { return f.open(5 * time.Second) }); err != nil {
		t.Fatal(err)
	}
	if n := probe(t, ns.b, 300*time.Millisecond); n.tcp == 0 || n.arp == 0 {
		t.Fatalf("open fence: %+v, want TCP and ARP answered", n)
	}
	if err := in(f.close); err != nil {
		t.Fatal(err)
	}
	if n := probe(t, ns.b, 300*time.Millisecond); n.tcp > 0 || n.arp > 0 {
		t.Errorf("answered after close: %+v", n)
	}
}

type answered struct{ tcp, arp int }

// probe tries, from namespace name for about d, TCP connections to the
// service address and ARP requests for it, and counts the answers.
func probe(t *testing.T, name string, d time.Duration) answered {
	t.Helper()
	var n answered
	var err error
	inNS(t, name, func() {
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName("veth1"); err != nil {
			return
		}
		var c *arp.Client
		if c, err = arp.Dial(ifi); err != nil {
			return
		}
		defer c.Close()
		for start := time.Now(); time.Since(start) < d; {
			if tc, err := net.DialTimeout("tcp", "10.77.0.100:2222", 50*time.Millisecond); err == nil {
				tc.Close()
				n.tcp++
			}
			c.SetDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := c.Resolve(netip.MustParseAddr("10.77.0.100")); err == nil {
				n.arp++
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
