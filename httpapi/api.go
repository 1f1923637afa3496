// Package httpapi serves the gateway's REST API on the admin address: the
// unauthenticated /ping that load balancers probe, and the authenticated
// status and administration endpoints.
package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/udmg/gateway/cluster"
)

// Node is what the API needs from the local cluster member.
type Node interface {
	ID() string
	Mode() cluster.Mode
	StartedAt() time.Time
	LastActive() time.Time
	Authenticate(user, password string) bool
}

// Identity is how this node is reached, as reported in health checks.
type Identity struct {
	Hostname string
	IP       string
	Port     int
}

// API is the admin HTTP handler of one node.
type API struct {
	node Node
	id   Identity
	log  *slog.Logger
	mux  *http.ServeMux
}

// New builds the handler.
func New(node Node, id Identity, log *slog.Logger) *API {
	a := &API{node: node, id: id, log: log, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /ping", a.ping)
	a.mux.Handle("GET /api/sb_healthcheck", a.authenticated(a.healthcheck))
	a.mux.Handle("/", a.authenticated(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	}))
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// ping answers 200 ACTIVE only while this node serves under a valid lease;
// any other mode answers 403 with the mode, as the seed documents.
func (a *API) ping(w http.ResponseWriter, r *http.Request) {
	mode := a.node.Mode()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if mode == cluster.Active {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusForbidden)
	}
	w.Write([]byte(string(mode) + "\n"))
}

// NodeStatus is one node as the seed's sb_healthcheck and sb_mgmt_nodes show it.
type NodeStatus struct {
	Status             string `json:"status,omitempty"`
	NodeID             string `json:"nodeId"`
	NodeHostname       string `json:"nodeHostname"`
	NodeIPAddress      string `json:"nodeIPAddress"`
	NodePort           string `json:"nodePort"`
	NodeStatus         string `json:"nodeStatus"`
	NodeUptime         string `json:"nodeUptime"`
	NodeLastUpdate     string `json:"nodeLastUpdate"`
	NodeLastActiveDate string `json:"nodeLastActiveDate"`
}

func (a *API) healthcheck(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	writeJSON(w, http.StatusOK, NodeStatus{
		Status:             "operational",
		NodeID:             a.node.ID(),
		NodeHostname:       a.id.Hostname,
		NodeIPAddress:      a.id.IP,
		NodePort:           strconv.Itoa(a.id.Port),
		NodeStatus:         string(a.node.Mode()),
		NodeUptime:         now.Sub(a.node.StartedAt()).String(),
		NodeLastUpdate:     now.UTC().Format(time.RFC3339Nano),
		NodeLastActiveDate: a.node.LastActive().UTC().Format(time.RFC3339Nano),
	})
}

// authenticated admits requests carrying valid HTTP Basic credentials.
func (a *API) authenticated(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || !a.node.Authenticate(user, pass) {
			if ok {
				a.log.Warn("authentication failed", "user", user, "remote", r.RemoteAddr, "path", r.URL.Path)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="udmg"`)
			writeError(w, http.StatusUnauthorized, "authentication required")
			return
		}
		h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
