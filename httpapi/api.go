// Package httpapi serves the gateway's REST API on the admin address: the
// unauthenticated /ping that load balancers probe, and the authenticated
// status and administration endpoints.
//
// Every endpoint but GET /ping needs HTTP Basic credentials or a bearer
// token (POST /api/tokens), and each resource belongs to a permission domain
// (administration, servers, partners, rules, users, transfers) that users
// hold as a mode string such as "rw-". Reads are answered by the node that
// receives them; writes arriving on a node that does not lead the Raft group
// are passed to the leader and its answer is returned as if local. Errors are
// JSON {"error": "..."} with a fitting status.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/udmg/gateway/authguard"
	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/ui"
)

// Node is what the API needs from the local cluster member (*cluster.Node).
type Node interface {
	ID() string
	Mode() cluster.Mode
	StartedAt() time.Time
	LastActive() time.Time
	// State is a copy of the replicated state as this node has applied it;
	// requests use Read instead, which copies nothing.
	State() fsm.State
	// Read runs f on the replicated state in place, under its read lock: f
	// copies out what it needs and returns at once.
	Read(f func(s *fsm.State))
	// PasswordHash is an administrator's replicated bcrypt hash, nil for
	// an unknown user (authguard.Guard.Verify checks passwords against it).
	PasswordHash(user string) []byte
	// Apply commits a change; cluster.ErrNotLeader on a follower.
	Apply(fsm.Command) error
	IsLeader() bool
	// AppliedIndex is the last log index applied to State.
	AppliedIndex() uint64
	// WaitApplied returns once the log up to index is applied to State
	// (woken by the apply, not polled), or with ctx's error.
	WaitApplied(ctx context.Context, index uint64) error
	// LeaderAPI is the leader's admin host:port, for forwarding writes.
	LeaderAPI() (string, bool)
}

// Identity is how this node is reached, as reported in health checks.
type Identity struct {
	Hostname string
	IP       string
	Port     int
}

// Options configures the API of one node.
type Options struct {
	Node     Node
	Identity Identity
	// Table is the mirrored node table read by /api/sb_mgmt_nodes; nil
	// (or a failing table) serves the cluster state instead.
	Table  NodeTable
	Logger *slog.Logger
	// Now is the wall clock for token expiry and license validity
	// (time.Now when nil).
	Now func() time.Time
	// TokenTTL is how long a bearer token from POST /api/tokens lasts
	// (DefaultTokenTTL when zero).
	TokenTTL time.Duration
	// ForwardDial, when set, opens the connection a forwarded write goes
	// to the leader (at its admin address adminAddr) on: the cluster's
	// mutual TLS (cluster.Node.DialForward), whatever the API's own scheme.
	// Nil forwards over plain HTTP to the admin address (tests).
	ForwardDial func(ctx context.Context, adminAddr string) (net.Conn, error)
	// Metrics serves GET /metrics (metrics.Registry.Handler); nil answers 404.
	Metrics http.Handler
	// MFT is what the servers, partners, rules, transfers and history
	// endpoints need (mft.go).
	MFT MFT
	// Guard slows password guessing; the node's SFTP and FTP listeners
	// share it (nil: one of the API's own).
	Guard *authguard.Guard
}

// DefaultTokenTTL is the lifetime of bearer tokens unless configured.
const DefaultTokenTTL = 24 * time.Hour

// maxBody bounds JSON request bodies; real ones are a few hundred bytes.
const maxBody = 1 << 20

// API is the admin HTTP handler of one node.
type API struct {
	node     Node
	id       Identity
	table    NodeTable
	log      *slog.Logger
	now      func() time.Time
	tokenTTL time.Duration
	mux      *http.ServeMux
	methods  map[string][]string // allowed methods by path pattern, for 405 answers
	routes   []Route             // every endpoint, for Routes (openapi.go)
	logins   *authguard.Guard
	proxy    *httputil.ReverseProxy
	scheme   string

	// userMu serialises user changes on this node, so that the check that
	// some user keeps `users` write access and the change it guards cannot
	// interleave with another change (all changes run on the leader).
	userMu sync.Mutex

	mft MFT
}

// New builds the handler.
func New(o Options) *API {
	a := &API{
		node:     o.Node,
		id:       o.Identity,
		table:    o.Table,
		log:      o.Logger,
		now:      o.Now,
		tokenTTL: o.TokenTTL,
		mux:      http.NewServeMux(),
		methods:  map[string][]string{},
		logins:   o.Guard,
		mft:      o.MFT,
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.logins == nil {
		a.logins = authguard.New(authguard.Options{})
	}
	if a.tokenTTL <= 0 {
		a.tokenTTL = DefaultTokenTTL
	}
	a.proxy, a.scheme = a.newProxy(o.ForwardDial)

	a.public("GET", "/ping", http.HandlerFunc(a.ping))

	anyone := rule{}
	a.handle("GET", "/api/sb_healthcheck", anyone, a.healthcheck)
	a.handle("GET", "/api/sb_mgmt_nodes", rule{domain: DomainAdministration, need: permRead}, a.mgmtNodes)
	a.handle("DELETE", "/api/nodes/{id}", rule{domain: DomainAdministration, need: permWrite}, a.removeNode)

	a.handle("POST", "/api/tokens", anyone, a.createToken)
	a.handle("DELETE", "/api/tokens/current", anyone, a.revokeToken)

	routes(a, DomainUsers, &users)

	a.handle("GET", "/api/license", anyone, a.getLicense)
	a.handle("PUT", "/api/license", rule{domain: DomainAdministration, need: permWrite}, a.putLicense)
	a.handle("POST", "/api/secrets/rotate", rule{domain: DomainAdministration, need: permWrite}, a.rotateSecrets)

	a.handle("GET", "/metrics", rule{domain: DomainAdministration, need: permRead}, a.metrics(o.Metrics))
	a.handle("GET", "/api/cluster", rule{domain: DomainAdministration, need: permRead}, a.clusterStatus)
	a.routesMFT()
	a.routesDocs()

	for path, methods := range a.methods {
		allowed := methods
		a.mux.Handle(path, a.guard(anyone, func(w http.ResponseWriter, r *http.Request, _ *principal) {
			methodNotAllowed(w, r, allowed)
		}))
	}
	// The admin page's assets (no data; the page logs in through the API).
	page := ui.Handler()
	a.public("GET", "/{$}", page)
	a.public("GET", "/ui/", page)
	a.mux.Handle("/", a.guard(anyone, func(w http.ResponseWriter, r *http.Request, _ *principal) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	}))
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// handle registers an authenticated endpoint: credentials are checked, then
// the permission, then a write on a follower goes to the leader.
func (a *API) handle(method, path string, rl rule, h handlerFunc) {
	a.methods[path] = append(a.methods[path], method)
	a.routes = append(a.routes, Route{Method: method, Pattern: path})
	a.mux.Handle(method+" "+path, a.guard(rl, h))
}

// handlerFunc is an endpoint that knows who is calling.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *principal)

func (a *API) guard(rl rule, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.authenticate(w, r)
		if !ok {
			return
		}
		if err := rl.check(p, r); err != nil {
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
		if !isWrite(r.Method) {
			h(w, r, p)
			return
		}
		if !a.node.IsLeader() {
			a.forward(w, r)
			return
		}
		h(&indexWriter{ResponseWriter: w, node: a.node}, r, p)
	})
}

func isWrite(method string) bool { return method != http.MethodGet && method != http.MethodHead }

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed []string) {
	allow := slices.Clone(allowed)
	if slices.Contains(allow, http.MethodGet) {
		allow = append(allow, http.MethodHead)
	}
	slices.Sort(allow)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
}

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

func (a *API) healthcheck(w http.ResponseWriter, r *http.Request, _ *principal) {
	now := a.now()
	writeJSON(w, http.StatusOK, wire.NodeStatus{
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

// apply commits c and, on failure, answers with the status that fits.
func (a *API) apply(w http.ResponseWriter, what string, c fsm.Command) bool {
	c.At = a.now()
	return a.committed(w, what, a.node.Apply(c))
}

// committed answers a failed commit: 404 unknown object, 409 exists, in
// use, wrong state or needing a release some node does not run yet, 503
// leadership lost meanwhile, 500 otherwise.
func (a *API) committed(w http.ResponseWriter, what string, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, fsm.ErrUnknownObject), errors.Is(err, fsm.ErrUnknownUser):
		writeError(w, http.StatusNotFound, what+": "+err.Error())
	case errors.Is(err, fsm.ErrExists), errors.Is(err, fsm.ErrInUse), errors.Is(err, fsm.ErrTransferState), errors.Is(err, cluster.ErrMixedVersions):
		writeError(w, http.StatusConflict, what+": "+err.Error())
	case errors.Is(err, cluster.ErrNotLeader):
		writeError(w, http.StatusServiceUnavailable, what+": this node stopped leading the cluster; retry")
	default:
		a.log.Error("commit failed", "what", what, "err", err)
		writeError(w, http.StatusInternalServerError, what+": "+err.Error())
	}
	return false
}

// decodeJSON reads one JSON object into v, refusing unknown fields, so that a
// misspelt field is an error rather than silently ignored.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", tooBig.Limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "request body: want a JSON object, got nothing")
	default:
		writeError(w, http.StatusBadRequest, "request body: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	return false
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
