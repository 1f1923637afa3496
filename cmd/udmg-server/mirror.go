package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/config"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/mirror"
	"github.com/udmg/gateway/transfer"
)

// nodeMirror keeps this node's row in udmg_nodes fresh every HeartbeatCheck
// and carries the leader's OFFLINE marks, without ever making the cluster
// wait for the database.
type nodeMirror struct {
	store  mirror.Store
	writer *mirror.Writer
	row    mirror.Row
	every  time.Duration
	// peers is set for the embedded database, which only this node writes:
	// it also gets the other nodes' rows, as the replicated registry knows
	// them, and the history the ACTIVE node archived, so that it holds the
	// whole tables like a shared database would.
	peers bool
	// copied lists the archived transfers (as the replicated state still
	// holds them) already in the embedded history table.
	copied map[uint64]bool
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func openMirror(cfg *config.Config, log *slog.Logger) (*nodeMirror, error) {
	d := cfg.Database
	store, err := mirror.OpenLazy(context.Background(), mirror.Options{
		Type: d.Type, Path: filepath.Join(cfg.Cluster.DataDir, "udmg.db"),
		Address: d.Address, Name: d.Name, User: d.User, Password: d.Password, TLSCert: d.TLSCert, TLSKey: d.TLSKey,
	})
	if err != nil {
		return nil, err
	}
	log = log.With("component", "mirror")
	return &nodeMirror{store: store, writer: mirror.NewWriter(store, log), log: log,
		every: cfg.Controller.HeartbeatCheck, peers: d.Type != "postgresql"}, nil
}

// run starts the writer and the refresh loop for node.
func (m *nodeMirror) run(node *cluster.Node, row mirror.Row) {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.row = cancel, row
	m.wg.Add(2)
	go func() { defer m.wg.Done(); m.writer.Run(ctx) }()
	go func() {
		defer m.wg.Done()
		changes, stop := node.Subscribe()
		defer stop()
		t := time.NewTicker(m.every)
		defer t.Stop()
		for {
			m.submit(node)
			if m.peers {
				m.copyHistory(archivedTransfers(node))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-changes:
			}
		}
	}()
}

func (m *nodeMirror) submit(node *cluster.Node) {
	r := m.row
	r.Status = string(node.Mode())
	r.Licensed = node.Licensed()
	r.LastUpdate = time.Now()
	r.LastActiveDate = node.LastActive()
	m.writer.Submit(r)
	if !m.peers {
		return
	}
	// A peer that gossip reports alive is current as of now: its row says
	// so every HeartbeatCheck, as a PostgreSQL row it writes itself would.
	alive := node.AliveMembers()
	now := time.Now()
	node.Read(func(st *fsm.State) {
		for id, p := range st.Nodes {
			if id == r.NodeID || p.Status == "" {
				continue
			}
			last := p.LastUpdate
			if alive[id] && p.Status != string(cluster.Offline) {
				last = now
			}
			m.writer.Submit(mirror.Row{NodeID: id, Hostname: p.Hostname, IPAddress: p.IP, Port: p.AdminPort,
				Status: p.Status, Licensed: p.Licensed, StartedAt: p.Started, LastUpdate: last, LastActiveDate: p.LastActive})
		}
	})
}

// archivedTransfers are the state's archived transfers (a bounded window,
// fsm.RecentWindow), read in place from its index rather than from a scan
// or a copy of the state.
func archivedTransfers(node *cluster.Node) map[uint64]fsm.Transfer {
	out := map[uint64]fsm.Transfer{}
	node.Read(func(s *fsm.State) {
		for t := range s.Archived() {
			out[t.ID] = t
		}
	})
	return out
}

// copyHistory writes into the embedded history table the transfers that
// the ACTIVE node archived into its own: every node's table then holds the
// whole history, whichever node was ACTIVE. The replicated state keeps the
// last fsm.RecentWindow archived transfers, read here every HeartbeatCheck
// (by the refresh loop only).
func (m *nodeMirror) copyHistory(archived map[uint64]fsm.Transfer) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	copied := make(map[uint64]bool, len(archived))
	var rows []mirror.HistoryEntry
	for id, t := range archived {
		if m.copied[id] {
			copied[id] = true
		} else {
			rows = append(rows, transfer.HistoryEntry(t))
		}
	}
	// One transaction for what is new: copied together or retried later.
	if err := m.store.AddHistory(ctx, rows...); err != nil {
		m.log.Warn("history not copied; retrying later", "rows", len(rows), "err", err)
	} else {
		for id := range archived {
			copied[id] = true
		}
	}
	m.copied = copied
}

// close writes the node's last row (OFFLINE: it is shutting down), waiting
// briefly for the database, and stops.
func (m *nodeMirror) close(node *cluster.Node) {
	if m.cancel != nil {
		m.submit(node)
		m.cancel()
		m.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		m.writer.Flush(ctx)
		cancel()
	}
	m.store.Close()
}
