package httpapi

import (
	"errors"
	"net/http"

	"github.com/udmg/gateway/cluster"
)

// nodeRemover is the part of the node that removes members; only the real
// cluster node has it (test fakes need not).
type nodeRemover interface {
	RemoveNode(id string) error
}

// removeNode takes a node out of the Raft configuration and the node table
// (udmgctl nodes remove). Like every write it runs on the leader.
func (a *API) removeNode(w http.ResponseWriter, r *http.Request, _ *principal) {
	id := r.PathValue("id")
	rm, ok := a.node.(nodeRemover)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this node cannot remove members")
		return
	}
	err := rm.RemoveNode(id)
	switch {
	case err == nil:
		a.log.Info("node removed by operator", "id", id)
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, cluster.ErrUnknownNode):
		writeError(w, http.StatusNotFound, "node "+id+": "+err.Error())
	case errors.Is(err, cluster.ErrNotLeader):
		writeError(w, http.StatusServiceUnavailable, "node "+id+": this node stopped leading the cluster; retry")
	default:
		writeError(w, http.StatusConflict, "node "+id+": "+err.Error())
	}
}
