package main

import (
	"log/slog"
	"sync/atomic"

	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
	"github.com/udmg/gateway/metrics"
)

// newMetrics makes the node's registry with raft's and memberlist's
// metrics bridged in; it must run before the cluster starts so that raft's
// first metrics land in it. A failed bridge costs only those metrics.
func newMetrics(log *slog.Logger) *metrics.Registry {
	reg := metrics.New()
	if err := reg.BridgeRaft(); err != nil {
		log.Warn("raft metrics not exported", "err", err)
	}
	return reg
}

// watchNode adds the node's own metrics and the transfers by state (from
// the replicated state, so every node reports them); the returned stop ends
// their counting goroutine.
func watchNode(reg *metrics.Registry, node *cluster.Node, svc *countedServices, log *slog.Logger) func() {
	err := reg.AddTransferCounts(func() (counts map[string]int) {
		node.Read(func(s *fsm.State) { counts = s.StatusCounts() }) // kept in the index: no scan per scrape
		return counts
	})
	if err != nil {
		log.Warn("transfer metrics not exported", "err", err)
	}
	if err := reg.AddTransferBytes(svc.meter.Totals); err != nil {
		log.Warn("transfer byte counts not exported", "err", err)
	}
	if err := reg.AddTaskCounts(svc.tasks.Counts); err != nil {
		log.Warn("task counts not exported", "err", err)
	}
	stop, err := reg.WatchNode(node, svc.Sessions)
	if err != nil {
		log.Warn("node metrics not exported", "err", err)
		return func() {}
	}
	return stop
}

// countedServices keeps the listeners of the latest ACTIVE period so that
// /metrics can count their sessions without racing Start and Stop (which
// the cluster never runs concurrently).
type countedServices struct {
	*mftServices
	running atomic.Pointer[listeners.Manager]
}

func (c *countedServices) Start(st fsm.State) error {
	err := c.mftServices.Start(st)
	c.running.Store(c.servers)
	return err
}

// Sessions counts open SFTP and FTP sessions, those still closing after a
// Stop included.
func (c *countedServices) Sessions() int {
	if s := c.running.Load(); s != nil {
		return s.Sessions()
	}
	return 0
}
