// Package vip holds the service address on the ACTIVE node (ARCHITECTURE.md
// "The service address"): it adds the address to an interface with a kernel
// lifetime shorter than what is left of the lease, refreshes that lifetime
// with each committed renewal, announces the address with gratuitous ARP,
// and removes it when the node stops serving. A node that dies or freezes
// removes nothing: its own nftables fence (fence.go) stops it answering
// for the address at the lease's end, to within FenceSlack, and the
// kernel drops the address by its lifetime up to Granularity later. A
// successor waits the grace the holder declared with its acquire
// (FenceSlack with the fence, Grace without) longer than the lease.
package vip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/arp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Granularity is how late the kernel may drop an address after its valid
// lifetime ends: IPv4 lifetimes count whole seconds and net/ipv4/devinet.c
// (check_lifetime) runs at most once per second (ADDRCONF_TIMER_FUZZ_MAX),
// on a round_jiffies_up'ed timer (up to ADDRCONF_TIMER_FUZZ = ¼ s more).
// TestKernelDropsExpiredAddress measures it on this machine.
const Granularity = 1250 * time.Millisecond

// Grace is what a successor must wait beyond the lease of a holder whose
// address only its lifetime takes away (no fence, or a holder that
// declared nothing: cluster.Config.UndeclaredGrace): the kernel's
// granularity plus a margin for a loaded machine's work queue (measured:
// 6-175 ms past the lifetime on a quiet machine).
const Grace = Granularity + 250*time.Millisecond

// MinLifetime is the shortest lifetime the kernel accepts (a valid_lft of
// 0 is refused): a lease with less left than this cannot be covered.
const MinLifetime = time.Second

// Announcements is how many gratuitous ARPs follow each Hold, AnnounceEvery
// apart, so that switches and clients learn the new MAC even if one is lost.
const (
	Announcements = 3
	AnnounceEvery = 150 * time.Millisecond
)

// ErrLeaseTooShort says that what is left of the lease is shorter than the
// kernel's shortest lifetime: the address cannot be held within it.
var ErrLeaseTooShort = errors.New("less than 1s left of the lease: the kernel's shortest address lifetime would outlast it")

// ErrHeldUp says that this process was held up between reading its clock
// and the kernel taking the lifetime, for so long that the address could
// have outlasted the lease: it was removed again.
var ErrHeldUp = errors.New("held up while adding the address: removed again, it could have outlasted the lease")

// Holder adds, refreshes and removes the service address on one interface.
// Its methods may be called from any goroutine.
type Holder struct {
	setting string // how the configuration names the address, for errors
	prefix  netip.Prefix
	link    netlink.Link
	fence   *fence // nil: nftables unavailable, the lifetime alone
	log     *slog.Logger

	mu       sync.Mutex
	held     bool
	until    time.Time     // the lease's end, as the last Hold or Refresh was told
	announce chan struct{} // closed by Drop: stops the announcer
	done     chan struct{} // closed when the announcer has returned

	stopWatch, watched chan struct{} // the fence's watcher: closed by Close, closed when it has returned
	closeOnce          sync.Once
}

// New checks that the address can be held on the interface and that this
// process may do so (CAP_NET_ADMIN: a netlink request that changes
// nothing), and removes a copy left over from an earlier run of this node
// (it is not ACTIVE yet). address is a CIDR ("192.168.56.100/24").
func New(address, iface string, log *slog.Logger) (*Holder, error) {
	if log == nil {
		log = slog.Default()
	}
	setting := fmt.Sprintf("[vip] Address %s", address)
	prefix, err := netip.ParsePrefix(address)
	if err != nil || !prefix.Addr().Is4() {
		return nil, fmt.Errorf("%s: not an IPv4 address with its prefix", setting)
	}
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("%s: [vip] Interface %s: %w", setting, iface, err)
	}
	// Setting the MTU it already has is a no-op that still needs the
	// privilege: the node finds out now, not when it becomes ACTIVE.
	if err := netlink.LinkSetMTU(link, link.Attrs().MTU); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%s: this process may not change the addresses of %s (needs CAP_NET_ADMIN: run as root, with AmbientCapabilities=CAP_NET_ADMIN, or in a container with cap_add NET_ADMIN)", setting, iface)
		}
		return nil, fmt.Errorf("%s: probe %s with netlink: %w", setting, iface, err)
	}
	h := &Holder{setting: setting, prefix: prefix, link: link, log: log}
	if h.fence, err = newFence(prefix.Addr()); err != nil {
		log.Warn("no nftables fence for the service address: a node that dies or freezes while ACTIVE answers for it until the kernel drops it, up to "+Granularity.String()+" after its lease",
			"address", address, "err", err)
	}
	if err := h.del(); err == nil {
		log.Warn("removed the service address left on the interface by an earlier run", "address", address, "interface", iface)
	} else if !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return nil, fmt.Errorf("%s: remove a copy left by an earlier run: %w", setting, err)
	}
	if h.fence != nil {
		h.stopWatch, h.watched = make(chan struct{}), make(chan struct{})
		go h.watch(h.stopWatch, h.watched)
	}
	return h, nil
}

// Fenced reports whether the node's kernel fences the address at the
// lease's end (to within FenceSlack): then that is how long the address
// may outlast a lease, else Grace.
func (h *Holder) Fenced() bool { return h.fence != nil }

// IP is the service address without its prefix (where connections to
// partners leave from with [vip] SourceAddress).
func (h *Holder) IP() net.IP { return net.IP(h.prefix.Addr().AsSlice()) }

func (h *Holder) addr(lifetime time.Duration) *netlink.Addr {
	secs := int(lifetime / time.Second)
	return &netlink.Addr{
		IPNet:       &net.IPNet{IP: h.IP(), Mask: net.CIDRMask(h.prefix.Bits(), 32)},
		ValidLft:    secs,
		PreferedLft: secs,
	}
}

func (h *Holder) del() error {
	return netlink.AddrDel(h.link, h.addr(0))
}

// remove takes the address off the interface; gone already (by its
// lifetime) is fine.
func (h *Holder) remove() error {
	if err := h.del(); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return err
	}
	return nil
}

// lifetime is the longest kernel lifetime that ends before remaining does:
// whole seconds, rounded down.
func lifetime(remaining time.Duration) (time.Duration, error) {
	l := remaining.Truncate(time.Second)
	if l < MinLifetime {
		return 0, ErrLeaseTooShort
	}
	return l, nil
}

// set adds the address, or replaces its lifetime, for at most remaining
// (measured at since), and opens the fence until then. If this process was
// held up between reading its clock and the kernel taking the lifetime (a
// pause, a stalled scheduler) for longer than the slack between remaining
// and the whole seconds given to the kernel, the address could outlive the
// lease: it is removed at once; the fence likewise, held up for longer
// than FenceSlack, is closed.
func (h *Holder) set(remaining time.Duration, since time.Time) error {
	l, err := lifetime(remaining - time.Since(since))
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(h.link, h.addr(l)); err != nil {
		return fmt.Errorf("%s: add to %s: %w", h.setting, h.link.Attrs().Name, err)
	}
	if late := time.Since(since); l+late > remaining {
		err := fmt.Errorf("%s: %w (%s after the lease was read)", h.setting, ErrHeldUp, late.Round(time.Millisecond))
		return errors.Join(err, h.remove())
	}
	if h.fence == nil {
		return nil
	}
	h.until = since.Add(remaining)
	err = h.openFence()
	if errors.Is(err, unix.ENOENT) {
		h.log.Warn("the service address's nftables fence was removed (nft flush ruleset?): made again", "table", FenceTable)
		err = h.remakeFence()
	}
	if err != nil && !errors.Is(err, ErrHeldUp) {
		// Without its fence the address may not stay: the successors
		// wait only the grace the fence allows (Fenced).
		err = errors.Join(fmt.Errorf("%s: %w", h.setting, err), h.remove())
	}
	return err
}

// remakeFence builds the fence's tables again and opens it until h.until.
func (h *Holder) remakeFence() error {
	if err := h.fence.build(); err != nil {
		return err
	}
	return h.openFence()
}

// openFence opens the fence until h.until, and closes it again if this
// process was held up for longer than FenceSlack between reading the clock
// and the kernel taking the timeout (ErrHeldUp).
func (h *Holder) openFence() error {
	read := time.Now()
	if err := h.fence.open(h.until.Sub(read)); err != nil {
		return err
	}
	if late := time.Since(read); late > FenceSlack {
		err := fmt.Errorf("%s: %w (the fence %s after the lease was read)", h.setting, ErrHeldUp, late.Round(time.Millisecond))
		return errors.Join(err, h.fence.close())
	}
	return nil
}

// Hold adds the address with a lifetime that ends before remaining (what is
// left of the lease, as of since) does, and announces it with gratuitous
// ARP on a goroutine that Drop stops.
func (h *Holder) Hold(remaining time.Duration, since time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held {
		return fmt.Errorf("%s: already held", h.setting)
	}
	if err := h.set(remaining, since); err != nil {
		return err
	}
	h.held = true
	h.announce, h.done = make(chan struct{}), make(chan struct{})
	go h.announcer(h.announce, h.done)
	return nil
}

// Refresh gives the held address a new lifetime after a committed renewal:
// remaining is what is left of the lease as of since. A lease with less
// than MinLifetime left keeps the lifetime it has, which ends sooner.
// After Drop it does nothing.
func (h *Holder) Refresh(remaining time.Duration, since time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held {
		return nil
	}
	if err := h.set(remaining, since); err != nil && !errors.Is(err, ErrLeaseTooShort) {
		return err
	}
	return nil
}

// Drop removes the address (gone already, by its lifetime, is fine) and
// stops the announcer.
func (h *Holder) Drop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held {
		return nil
	}
	h.held = false
	var err error
	if h.fence != nil {
		// The fence first: not answering for the address is what counts.
		err = h.fence.close()
	}
	if derr := h.remove(); derr != nil {
		err = errors.Join(err, fmt.Errorf("%s: remove from %s: %w", h.setting, h.link.Attrs().Name, derr))
	}
	close(h.announce)
	<-h.done
	return err
}

// Close drops the address if held, stops the fence's watcher and removes
// its tables: the node is stopping.
func (h *Holder) Close() error {
	err := h.Drop()
	if h.fence != nil {
		h.closeOnce.Do(func() {
			close(h.stopWatch)
			<-h.watched
			err = errors.Join(err, h.fence.remove())
		})
	}
	return err
}

// watch keeps the fence whole while the address is held. nftables tells it
// of every change to a table, chain, rule or set (nft flush ruleset, a
// firewall reloaded, a rule inserted before the fence's): a fence found
// changed is made again at once, not at the next renewal, which a node
// killed in between would never reach (its address then answered for up
// to Granularity past its lease, longer than the FenceSlack it declared).
func (h *Holder) watch(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for warned := false; ; {
		var events chan *nftables.MonitorEvent
		mon := nftables.NewMonitor()
		c, err := nftables.New()
		if err == nil {
			events, err = c.AddMonitor(mon)
		}
		if err != nil && !warned {
			h.log.Warn("cannot watch the service address's nftables fence: a change to it is mended at the next renewal only", "table", FenceTable, "err", err)
			warned = true
		}
		for err == nil {
			select {
			case <-stop:
				mon.Close()
				for range events { // the monitor's goroutines end once drained
				}
				return
			case ev, ok := <-events:
				switch {
				case !ok:
					err = errors.New("monitor ended")
				case ev.Type == nftables.MonitorEventTypeOOB:
					h.log.Warn("watching the service address's nftables fence", "err", ev.Error)
				case touches(ev):
					h.mend()
				}
			}
		}
		// The monitor's socket failed (its buffer overran): a new one,
		// and a check for what it may have missed.
		h.mend()
		select {
		case <-stop:
			return
		case <-time.After(time.Second):
		}
	}
}

// mend makes the fence of a held address again if it is not as built,
// open until the lease's end; if it cannot, the address goes, as in set.
func (h *Holder) mend() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held {
		return
	}
	if ok, err := h.fence.intact(); ok && err == nil {
		return
	}
	err := h.remakeFence()
	if errors.Is(err, ErrHeldUp) {
		h.log.Warn("the service address's nftables fence was changed under the node: made again, but closed", "table", FenceTable, "err", err)
		return
	}
	if err != nil {
		h.log.Error("the service address's nftables fence was changed under the node and cannot be made again: address removed", "table", FenceTable, "err", err)
		if derr := h.remove(); derr != nil {
			h.log.Error("service address not removed", "err", derr)
		}
		return
	}
	h.log.Warn("the service address's nftables fence was changed under the node (nft flush ruleset, a firewall reload?): made again", "table", FenceTable,
		"lease_left", time.Until(h.until).Round(time.Millisecond))
}

// announcer sends Announcements gratuitous ARPs (a request from and for the
// service address, to the broadcast address), until stop is closed.
func (h *Holder) announcer(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	ifi, err := net.InterfaceByIndex(h.link.Attrs().Index)
	if err != nil {
		h.log.Warn("gratuitous ARP: no interface", "err", err)
		return
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		h.log.Warn("gratuitous ARP: cannot open a packet socket (CAP_NET_RAW); clients learn the address's new MAC only when their ARP entry expires", "interface", ifi.Name, "err", err)
		return
	}
	defer c.Close()
	ip := h.prefix.Addr()
	p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, ip, make(net.HardwareAddr, len(ifi.HardwareAddr)), ip)
	if err != nil {
		h.log.Warn("gratuitous ARP", "err", err)
		return
	}
	broadcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	t := time.NewTicker(AnnounceEvery)
	defer t.Stop()
	for i := 0; i < Announcements; i++ {
		if i > 0 {
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
		if err := c.WriteTo(p, broadcast); err != nil {
			h.log.Warn("gratuitous ARP", "interface", ifi.Name, "err", err)
		}
	}
}
