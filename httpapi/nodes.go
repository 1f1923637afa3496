package httpapi

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/mirror"
)

// NodeTable is the mirrored udmg_nodes table (mirror.Store has it).
type NodeTable interface {
	Nodes(ctx context.Context) ([]mirror.Row, error)
}

// SourceHeader says where /api/sb_mgmt_nodes read its rows: "database"
// (the udmg_nodes table) or "cluster-state" (the replicated registry, when
// the database cannot be read).
const SourceHeader = "X-Udmg-Source"

// tableTimeout bounds the database read, so that a database outage costs
// callers two seconds at most before the cluster state answers.
const tableTimeout = 2 * time.Second

func (a *API) mgmtNodes(w http.ResponseWriter, r *http.Request, _ *principal) {
	now := a.now()
	if a.table != nil {
		ctx, cancel := context.WithTimeout(r.Context(), tableTimeout)
		rows, err := a.table.Nodes(ctx)
		cancel()
		if err == nil {
			out := wire.NodeList{Nodes: make([]wire.NodeStatus, 0, len(rows))}
			for _, row := range rows {
				out.Nodes = append(out.Nodes, rowStatus(row, now))
			}
			w.Header().Set(SourceHeader, "database")
			writeJSON(w, http.StatusOK, out)
			return
		}
		a.log.Warn("node table unreadable; answering from the cluster state", "err", err)
	}
	w.Header().Set(SourceHeader, "cluster-state")
	writeJSON(w, http.StatusOK, a.stateNodes(now))
}

func rowStatus(row mirror.Row, now time.Time) wire.NodeStatus {
	return wire.NodeStatus{
		NodeID:             row.NodeID,
		NodeHostname:       row.Hostname,
		NodeIPAddress:      row.IPAddress,
		NodePort:           strconv.Itoa(row.Port),
		NodeStatus:         row.Status,
		NodeUptime:         uptime(row.Status, row.StartedAt, row.LastUpdate, now),
		NodeLastUpdate:     stamp(row.LastUpdate),
		NodeLastActiveDate: stamp(row.LastActiveDate),
	}
}

// stateNodes builds the node list from the replicated registry, ordered by
// node ID like the table; this node's own row shows its live mode.
func (a *API) stateNodes(now time.Time) wire.NodeList {
	nodes := copyOf(a.node, ofNodes)
	out := wire.NodeList{Nodes: make([]wire.NodeStatus, 0, len(nodes))}
	for _, id := range slices.Sorted(maps.Keys(nodes)) {
		n := nodes[id]
		s := nodeStatus(n, now)
		if id == a.node.ID() {
			s.NodeStatus = string(a.node.Mode())
			s.NodeUptime = uptime(s.NodeStatus, a.node.StartedAt(), now, now)
			s.NodeLastUpdate = stamp(now)
			if last := a.node.LastActive(); last.After(n.LastActive) {
				s.NodeLastActiveDate = stamp(last)
			}
		}
		out.Nodes = append(out.Nodes, s)
	}
	return out
}

func nodeStatus(n fsm.Node, now time.Time) wire.NodeStatus {
	return wire.NodeStatus{
		NodeID:             n.ID,
		NodeHostname:       n.Hostname,
		NodeIPAddress:      n.IP,
		NodePort:           strconv.Itoa(n.AdminPort),
		NodeStatus:         n.Status,
		NodeUptime:         uptime(n.Status, n.Started, n.LastUpdate, now),
		NodeLastUpdate:     stamp(n.LastUpdate),
		NodeLastActiveDate: stamp(n.LastActive),
	}
}

// uptime is how long the process has run: until now while it runs, until
// its last update once it is OFFLINE; empty when its start is unknown.
func uptime(status string, started, lastUpdate, now time.Time) string {
	if started.IsZero() {
		return ""
	}
	end := now
	if status == mirror.StatusOffline && !lastUpdate.IsZero() {
		end = lastUpdate
	}
	return max(0, end.Sub(started)).String()
}

// stamp formats a time as the seed does; empty for never.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
