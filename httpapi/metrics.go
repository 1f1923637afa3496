package httpapi

import (
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
)

// GET /metrics is authenticated like every endpoint but /ping and needs
// `administration` read: point Prometheus at it with basic_auth (a user
// such as "prometheus" with perms administration "r--" and nothing else) or
// with a bearer token from POST /api/tokens (tokens expire, so basic_auth
// suits a long-running scraper better).
func (a *API) metrics(h http.Handler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ *principal) {
		if h == nil {
			writeError(w, http.StatusNotFound, "metrics are not enabled on this node")
			return
		}
		h.ServeHTTP(w, r)
	}
}

// clusterNode is what GET /api/cluster reads beyond Node; *cluster.Node
// has it.
type clusterNode interface {
	Node
	Lease() fsm.Lease
	LeaseRemaining() (uint64, time.Duration)
	RaftStatus() cluster.RaftStatus
}

func (a *API) clusterStatus(w http.ResponseWriter, r *http.Request, _ *principal) {
	n, ok := a.node.(clusterNode)
	if !ok {
		writeError(w, http.StatusNotImplemented, "cluster status is not available on this node")
		return
	}
	now := a.now()
	lease := n.Lease()
	rs := n.RaftStatus()
	st := wire.LeaseStatus{
		Holder: lease.Holder, Epoch: lease.Epoch, Released: lease.Released,
		Duration: lease.Duration.String(), AcquiredAt: lease.AcquiredAt, RenewedAt: lease.RenewedAt,
	}
	epoch, left := n.LeaseRemaining()
	switch {
	case left > 0 && epoch == lease.Epoch:
		st.RemainingSeconds, st.RemainingFrom = left.Seconds(), "holder clock"
	case lease.Held():
		last := lease.RenewedAt
		if last.IsZero() {
			last = lease.AcquiredAt
		}
		st.RemainingSeconds, st.RemainingFrom = max(0, last.Add(lease.Duration).Sub(now).Seconds()), "last renewal"
	}
	if rn, ok := n.(interface {
		LastRenewal() (uint64, time.Duration)
	}); ok {
		if epoch, took := rn.LastRenewal(); took > 0 && epoch == lease.Epoch && lease.Holder == n.ID() {
			secs := took.Seconds()
			st.RenewalSeconds = &secs
		}
	}
	out := wire.ClusterStatus{
		Leader: rs.LeaderID,
		Lease:  st,
		AnsweredBy: wire.AnsweringNode{
			NodeID: n.ID(), Mode: string(n.Mode()), RaftState: rs.State,
			Term: rs.Term, CommitIndex: rs.CommitIndex, Voters: rs.Voters,
		},
		Nodes: []wire.ClusterEntry{},
	}
	if lease.Held() && st.RemainingSeconds > 0 {
		out.Active = lease.Holder
	}
	if !rs.LastContact.IsZero() {
		out.AnsweredBy.LastContact = &rs.LastContact
	}
	nodes := copyOf(n, ofNodes)
	for _, id := range slices.Sorted(maps.Keys(nodes)) {
		e := wire.ClusterEntry{NodeID: id, Status: nodes[id].Status, AdminAddr: nodes[id].AdminAddr,
			Leader: id == rs.LeaderID, Active: id == out.Active, CommandVersion: fsm.KnownVersion(nodes[id])}
		if e.Active {
			// The registry hears from each node every HeartbeatCheck; the
			// lease says now who serves.
			e.Status = string(cluster.Active)
		}
		out.Nodes = append(out.Nodes, e)
	}
	writeJSON(w, http.StatusOK, out)
}
