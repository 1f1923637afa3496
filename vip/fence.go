package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// fence is the kernel's own end of the lease, to the millisecond, in this
// network namespace: nftables rules drop every IPv4 packet to or from the
// service address and every ARP packet that asks for it or answers for it,
// unless the address is in the set "lease". Hold and Refresh put it there
// with a timeout that ends before the lease does; the kernel then stops
// answering for the address when the timeout runs out, whatever this
// process is doing by then (killed, stopped, stuck on a frozen disk), while
// the address itself may stay up to Granularity longer (whole-second
// lifetimes). TestFenceEndsWithTheLease measures how close.
type fence struct {
	ip   []byte
	sets []*nftables.Set // "lease" in the ip table and in the arp table
}

// FenceTable is the name of the node's nftables tables (family ip and arp)
// that fence the service address.
const FenceTable = "udmg_vip"

// arp hooks (linux/netfilter_arp.h): not the inet ones of the same numbers.
var (
	arpIn  = nftables.ChainHookRef(0) // NF_ARP_IN
	arpOut = nftables.ChainHookRef(1) // NF_ARP_OUT
)

// newFence replaces the node's fence tables (a copy left by an earlier run
// included) with fresh ones, the set empty: nothing is answered for the
// address until open.
func newFence(addr netip.Addr) (*fence, error) {
	f := &fence{ip: addr.AsSlice()}
	if err := f.build(); err != nil {
		return nil, err
	}
	return f, nil
}

// build (re)makes the tables, their set empty.
func (f *fence) build() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	f.sets = nil
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyARP} {
		old, err := c.ListTablesOfFamily(fam)
		if err != nil {
			return fmt.Errorf("list nftables tables: %w", err)
		}
		for _, t := range old {
			if t.Name == FenceTable {
				c.DelTable(t)
			}
		}
		t := c.AddTable(&nftables.Table{Family: fam, Name: FenceTable})
		set := &nftables.Set{Table: t, Name: "lease", KeyType: nftables.TypeIPAddr, HasTimeout: true}
		if err := c.AddSet(set, nil); err != nil {
			return fmt.Errorf("nftables set %s lease: %w", FenceTable, err)
		}
		f.sets = append(f.sets, set)
		// Where the address sits in each packet: the IPv4 header's
		// destination (16) and source (12); ARP's target (24) and sender
		// (14) protocol address, for Ethernet and IPv4.
		type rule struct {
			hook   *nftables.ChainHook
			name   string
			offset uint32
		}
		rules := []rule{{nftables.ChainHookInput, "input", 16}, {nftables.ChainHookOutput, "output", 12}}
		if fam == nftables.TableFamilyARP {
			rules = []rule{{arpIn, "input", 24}, {arpOut, "output", 14}}
		}
		for _, r := range rules {
			ch := c.AddChain(&nftables.Chain{Name: r.name, Table: t, Type: nftables.ChainTypeFilter,
				Hooknum: r.hook, Priority: nftables.ChainPriorityFilter})
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: r.offset, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: f.ip},
				&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, Invert: true},
				&expr.Verdict{Kind: expr.VerdictDrop},
			}})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables tables %s: %w", FenceTable, err)
	}
	return nil
}

// fenceMargin is taken off every timeout: the kernel counts element
// timeouts in jiffies (4 ms at HZ=250), rounding up.
const fenceMargin = 10 * time.Millisecond

// FenceSlack bounds how long after the lease's end the fence may still let
// the address be answered for: the time between reading the clock for a
// timeout and the kernel taking it. A holder held up for longer closes the
// fence again (ErrHeldUp).
const FenceSlack = 100 * time.Millisecond

// open lets the address be answered for, for timeout from now at most (the
// old timeout replaced, in one transaction); a timeout within fenceMargin
// closes it.
func (f *fence) open(timeout time.Duration) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	timeout = (timeout - fenceMargin).Truncate(time.Millisecond)
	for _, s := range f.sets {
		c.FlushSet(s)
		if timeout > 0 {
			if err := c.SetAddElements(s, []nftables.SetElement{{Key: f.ip, Timeout: timeout}}); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables set %s lease: %w", FenceTable, err)
	}
	return nil
}

// close stops answering for the address at once. Tables already gone (a
// newer holder of this namespace replaced them) are closed enough.
func (f *fence) close() error {
	err := f.open(0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// intact reports whether the fence's tables are as build made them: the
// set in each, and in each of its two chains one rule.
func (f *fence) intact() (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, err
	}
	chains, err := c.ListChains()
	if err != nil {
		return false, err
	}
	for _, s := range f.sets {
		if _, err := c.GetSetByName(s.Table, s.Name); err != nil {
			return false, nil
		}
		n := 0
		for _, ch := range chains {
			if ch.Table.Name != FenceTable || ch.Table.Family != s.Table.Family {
				continue
			}
			n++
			rules, err := c.GetRules(s.Table, ch)
			if err != nil || len(rules) != 1 {
				return false, err
			}
		}
		if n != 2 {
			return false, nil
		}
	}
	return true, nil
}

// touches reports whether ev changes the fence's tables, chains, rules or
// sets (not the set's elements, which open changes with every renewal).
func touches(ev *nftables.MonitorEvent) bool {
	var t *nftables.Table
	switch d := ev.Data.(type) {
	case *nftables.Table:
		t = d
	case *nftables.Chain:
		t = d.Table
	case *nftables.Rule:
		t = d.Table
	case *nftables.Set:
		t = d.Table
	}
	if t == nil {
		// Not parsed (a rule with an expression this library does not
		// know): maybe ours.
		return ev.Type != nftables.MonitorEventTypeNewSetElem && ev.Type != nftables.MonitorEventTypeDelSetElem
	}
	return t.Name == FenceTable
}

// remove deletes the fence's tables (a node stopping, its address dropped).
func (f *fence) remove() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	for _, s := range f.sets {
		c.DelTable(s.Table)
	}
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove nftables tables %s: %w", FenceTable, err)
	}
	return nil
}
