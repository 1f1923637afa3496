package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/config"
	"github.com/udmg/gateway/vip"
)

// serviceAddress is [vip] as the node runs it: the holder of the address
// while ACTIVE, and the settings that follow from it. A nil one (no [vip]
// Address) does nothing.
type serviceAddress struct {
	h        *vip.Holder
	deadline time.Duration
	source   bool
	node     atomic.Pointer[cluster.Node] // set once the node has started
	log      *slog.Logger
}

// openVIP checks at start-up that this node can hold the service address
// (interface, CAP_NET_ADMIN, a Deadline the kernel's whole-second lifetimes
// can cover), so that it refuses to start rather than fail when ACTIVE.
func openVIP(where string, cfg *config.Config, log *slog.Logger) (*serviceAddress, error) {
	v := cfg.VIP
	if !v.Enabled() {
		return nil, nil
	}
	if err := vipDeadline(where, cfg); err != nil {
		return nil, err
	}
	h, err := vip.New(v.Address, v.Interface, log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	a := &serviceAddress{h: h, deadline: cfg.Controller.Deadline, source: v.SourceAddress, log: log}
	log.Info("service address configured", "address", v.Address, "interface", v.Interface, "source_address", v.SourceAddress,
		"fenced", h.Fenced(), "lease_grace", a.grace())
	return a, nil
}

// vipDeadline refuses a Deadline shorter than the kernel's whole-second
// address lifetimes can follow (also checked by -check-config).
func vipDeadline(where string, cfg *config.Config) error {
	if min := vip.MinLifetime + cfg.Controller.Heartbeat; cfg.Controller.Deadline < min {
		return fmt.Errorf("%s: [controller] Deadline %s is too short for [vip] Address %s (the kernel's address lifetimes are whole seconds: at least %s, 1s + Heartbeat)",
			where, cfg.Controller.Deadline, cfg.VIP.Address, min)
	}
	return nil
}

// grace is cluster.Config.LeaseGrace: how long the address may outlast the
// lease on this node (the fence's slack, or without the fence the kernel's
// expiry granularity).
func (a *serviceAddress) grace() time.Duration {
	switch {
	case a == nil:
		return 0
	case a.h.Fenced():
		return vip.FenceSlack
	}
	return vip.Grace
}

// undeclaredGrace is cluster.Config.UndeclaredGrace: what a holder that
// declared no grace (an earlier release) may have left behind, the
// address until the kernel drops it.
func (a *serviceAddress) undeclaredGrace() time.Duration {
	if a == nil {
		return 0
	}
	return vip.Grace
}

// sourceIP is where connections to partners leave from, nil: anywhere.
func (a *serviceAddress) sourceIP() net.IP {
	if a == nil || !a.source {
		return nil
	}
	return a.h.IP()
}

// hold adds the address for what is left of the lease. Just after the
// wait, a lease may have less than the kernel's shortest lifetime left (or
// a busy machine may take too long to add it): the next renewal, every
// Heartbeat, gives it more.
func (a *serviceAddress) hold(node *cluster.Node) error {
	if a == nil {
		return nil
	}
	giveUp := time.Now().Add(a.deadline)
	for {
		since := time.Now()
		_, left := node.LeaseRemaining()
		err := a.h.Hold(left, since)
		if !errors.Is(err, vip.ErrLeaseTooShort) && !errors.Is(err, vip.ErrHeldUp) || time.Now().After(giveUp) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// drop removes the address: the first step of every Stop.
func (a *serviceAddress) drop() error {
	if a == nil {
		return nil
	}
	return a.h.Drop()
}

// onRenewal refreshes the address's lifetime and fence after each
// committed renewal, then calls next. What is left of the lease is read
// from the lease machine after the clock, never worked out from the
// renewal's latency: a pause between the renewal and the refresh would
// then stretch the address past the lease.
func (a *serviceAddress) onRenewal(next func(time.Duration)) func(time.Duration) {
	if a == nil {
		return next
	}
	return func(took time.Duration) {
		if node := a.node.Load(); node != nil {
			since := time.Now()
			_, left := node.LeaseRemaining()
			if err := a.h.Refresh(left, since); err != nil {
				a.log.Error("service address not refreshed", "err", err)
			}
		}
		if next != nil {
			next(took)
		}
	}
}

// close removes the address's fence tables once the node has stopped
// (fenced: the address is gone).
func (a *serviceAddress) close() {
	if a == nil {
		return
	}
	if err := a.h.Close(); err != nil {
		a.log.Warn("service address fence not removed", "err", err)
	}
}

// started gives the address its node, once there is one.
func (a *serviceAddress) started(node *cluster.Node) {
	if a != nil {
		a.node.Store(node)
	}
}

// probeListen opens and closes addr to see whether it is free. The
// listeners may bind the service address ([listeners] Host = the VIP),
// which this node holds only when ACTIVE: that probe binds with
// IP_FREEBIND, so a clash on the port still shows but the missing address
// does not. The listeners themselves need no IP_FREEBIND: the address is
// added before they open, and a Host that no node ever holds still fails.
func probeListen(cfg *config.Config, network, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	if host, _, err := net.SplitHostPort(addr); err == nil && cfg.VIP.Enabled() {
		if ip, _, err := cfg.VIP.IPNet(); err == nil && ip.Equal(net.ParseIP(host)) {
			lc.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_FREEBIND, 1)
				}); err != nil {
					return err
				}
				return serr
			}
		}
	}
	return lc.Listen(context.Background(), network, addr)
}
