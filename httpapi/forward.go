package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// IndexHeader carries, on the answer to a write, the leader's applied log
// index once the write was done. The follower that forwarded the write holds
// the answer until it has applied that index too, so that a client reads its
// own write from the node it wrote through (a token it just created, a user
// it just added).
const IndexHeader = "X-Udmg-Index"

// catchUpLimit bounds how long a follower holds an answer for its own state
// to catch up; past it the answer goes out anyway (the write is committed).
const catchUpLimit = 5 * time.Second

// indexWriter adds IndexHeader to the leader's answers to writes: when the
// handler starts its answer, its commit has been applied.
type indexWriter struct {
	http.ResponseWriter
	node Node
}

func (w *indexWriter) WriteHeader(status int) {
	w.Header().Set(IndexHeader, strconv.FormatUint(w.node.AppliedIndex(), 10))
	w.ResponseWriter.WriteHeader(status)
}

func (w *indexWriter) Write(b []byte) (int, error) {
	if w.Header().Get(IndexHeader) == "" {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *indexWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// catchUp waits until this node has applied the index the leader reported
// with a forwarded write's answer (bounded by catchUpLimit and the request).
func (a *API) catchUp(resp *http.Response) error {
	index, err := strconv.ParseUint(resp.Header.Get(IndexHeader), 10, 64)
	if err != nil {
		return nil // not a write the leader carried out
	}
	ctx, cancel := context.WithTimeout(resp.Request.Context(), catchUpLimit)
	defer cancel()
	if err := a.node.WaitApplied(ctx, index); err != nil {
		a.log.Warn("answering a forwarded write before this node applied it", "index", index, "applied", a.node.AppliedIndex(), "err", err)
	}
	return nil
}

// ForwardedByHeader marks a request a follower passed to the leader; it
// names the follower. A marked request that reaches a node which does not
// lead either is refused rather than passed on again, so that requests never
// loop while leadership moves.
const ForwardedByHeader = "X-Udmg-Forwarded-By"

type targetKey struct{}

// newProxy builds the reverse proxy that carries writes to the leader: same
// method, path, query, body and Authorization (the leader authenticates the
// request again), and the leader's answer goes back unchanged.
//
// With dial (the server always sets it) the write travels on the cluster's
// own mutual TLS: a connection to the leader's Raft port, told apart from
// Raft by ALPN, on which both nodes have shown a certificate of the cluster
// CA. Credentials therefore never leave in clear, whether or not the admin
// API serves HTTPS, and the leader knows the request comes from a member.
// One listener and one identity serve both, rather than a second port with
// its own certificates to configure and open in firewalls.
func (a *API) newProxy(dial func(ctx context.Context, adminAddr string) (net.Conn, error)) (*httputil.ReverseProxy, string) {
	scheme := "http"
	transport := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
	if dial != nil {
		// The connection is TLS already: http.Transport uses it as is
		// for https URLs, keyed by the leader's admin address.
		scheme = "https"
		transport.DialContext = nil
		transport.DialTLSContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(targetKey{}).(*url.URL))
			pr.SetXForwarded()
			pr.Out.Header.Set(ForwardedByHeader, a.node.ID())
		},
		Transport:      transport,
		ModifyResponse: a.catchUp,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			target := r.Context().Value(targetKey{}).(*url.URL)
			a.log.Warn("forwarding to the leader failed", "leader", target.Host, "method", r.Method, "path", r.URL.Path, "err", err)
			writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("cluster leader at %s unreachable: %v", target.Host, err))
		},
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	return p, scheme
}

// forward passes a write to the Raft leader, which alone can commit it.
func (a *API) forward(w http.ResponseWriter, r *http.Request) {
	if by := r.Header.Get(ForwardedByHeader); by != "" {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("request forwarded by %s reached %s, which does not lead the cluster either (leadership is moving); retry", by, a.node.ID()))
		return
	}
	addr, ok := a.node.LeaderAPI()
	if !ok {
		writeError(w, http.StatusServiceUnavailable, "no cluster leader")
		return
	}
	a.log.Debug("forwarding write to the leader", "leader", addr, "method", r.Method, "path", r.URL.Path)
	target := &url.URL{Scheme: a.scheme, Host: addr}
	a.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, target)))
}
