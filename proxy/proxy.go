// Package proxy is the Authentication Proxy of the seed documents
// (udmg-proxy): it forwards /service/NAME/... to the targets of service
// NAME, trying them in order and moving to the next when one fails, so that
// an operator's session (the admin UI, udmgctl, scripts) survives the loss
// of the node it was talking to. Any gateway node answers any API request
// (writes are passed to the leader), so "the first target that answers" is
// enough; the proxy keeps using the target that answered last until it
// fails.
//
// The configuration is the seed's server.toml (config.go); unknown keys and
// wrong types stop start-up with one line naming the file, line and key:
//
//	[proxy]
//	recover = true      # a panic answers 500 (default true)
//	cors = true         # CORS headers, preflight answered (default false)
//	tracker = true      # X-Request-Id on every request (default false)
//	logger = true       # one access-log line per request (default true)
//	port = "5000"       # string or number (default 5000)
//	inet = "127.0.0.1"  # listen address (default 127.0.0.1)
//
//	[service.mft]
//	protocol = "http"   # or https, towards the targets
//	policy = "failover" # the only policy
//	admins = ["admin"]  # optional: only these users' HTTP Basic logins pass
//
//	[[service.mft.targets]]
//	hostname = "node1"
//	port = 8080
//	[[service.mft.targets]]
//	hostname = "node2"
//	port = 8080
//
// Requests arrive as /service/mft/... (or /mft/..., as the seed's nginx
// location /service/ → proxy_pass http://proxy/ sends them) and reach the
// target as /.... A request that could not reach a target (connection
// refused, timed out) goes to the next one whatever its method; one that
// reached a target which then failed is repeated only when that is
// harmless (GET, HEAD, OPTIONS, PUT, DELETE, with bodies up to 8 MiB).
// Bearer tokens pass through untouched: admins restricts HTTP Basic logins
// only, and the gateway checks every credential itself.
package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Timeouts towards the targets: a dead node refuses at once, a frozen or
// cut-off one is given up after these.
const (
	dialTimeout           = 2 * time.Second
	responseHeaderTimeout = 15 * time.Second
)

// maxReplay is the largest request body kept to be sent again to the next
// target; a larger body is streamed to one target only.
const maxReplay = 8 << 20

// TargetHeader names, in every answer, the target that produced it.
const TargetHeader = "X-Udmg-Proxy-Target"

// RequestIDHeader carries the request ID when [proxy] tracker is on.
const RequestIDHeader = "X-Request-Id"

// Proxy is the HTTP handler of udmg-proxy.
type Proxy struct {
	cfg       *Config
	log       *slog.Logger
	services  map[string]*service
	transport *http.Transport
}

type service struct {
	Service
	prefix  string // "/service/NAME"
	targets []*url.URL
	current atomic.Int32 // index of the target that answered last
	rp      *httputil.ReverseProxy
}

type ctxKey struct{}

// requestInfo travels with a request from the handler to the transport.
type requestInfo struct {
	prefix string
	target string // set by the transport: the target that answered
}

// New builds the handler for cfg.
func New(cfg *Config, logger *slog.Logger) *Proxy {
	if logger == nil {
		logger = slog.Default()
	}
	p := &Proxy{
		cfg:      cfg,
		log:      logger,
		services: map[string]*service{},
		transport: &http.Transport{
			Proxy:                 nil, // never through an environment proxy
			DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: responseHeaderTimeout,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   16,
			ForceAttemptHTTP2:     true,
		},
	}
	errLog := log.New(&slogWriter{logger}, "", 0)
	for _, sc := range cfg.Services {
		s := &service{Service: sc, prefix: "/service/" + sc.Name}
		for _, t := range sc.Targets {
			s.targets = append(s.targets, &url.URL{Scheme: sc.Protocol, Host: t.Addr()})
		}
		s.rp = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetXForwarded()
				pr.Out.Header.Set("X-Forwarded-Prefix", info(pr.In.Context()).prefix)
				pr.Out.URL.Scheme, pr.Out.URL.Host = sc.Protocol, "" // the transport picks the target
			},
			Transport:      &failover{s: s, base: p.transport, log: logger},
			FlushInterval:  -1, // stream server-sent events as they come
			ModifyResponse: s.modifyResponse,
			ErrorHandler:   s.errorHandler(logger),
			ErrorLog:       errLog,
		}
		p.services[sc.Name] = s
	}
	return p
}

// Close drops idle connections to the targets.
func (p *Proxy) Close() { p.transport.CloseIdleConnections() }

func info(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(ctxKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	w = rec
	id := ""
	if p.cfg.Proxy.Tracker {
		id = r.Header.Get(RequestIDHeader)
		if id == "" || len(id) > 128 {
			id = newRequestID()
			r.Header.Set(RequestIDHeader, id)
		}
		w.Header().Set(RequestIDHeader, id)
	}
	ri := &requestInfo{}
	if p.cfg.Proxy.Logger {
		defer func() {
			attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.status, "bytes", rec.bytes,
				"duration", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr}
			if ri.target != "" {
				attrs = append(attrs, "target", ri.target)
			}
			if id != "" {
				attrs = append(attrs, "request_id", id)
			}
			p.log.Info("request", attrs...)
		}()
	}
	if p.cfg.Proxy.Recover {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				p.log.Error("panic while handling a request; answered 500", "panic", fmt.Sprint(v), "path", r.URL.Path)
				if !rec.wrote {
					writeError(w, http.StatusInternalServerError, "internal error in udmg-proxy")
				}
			}
		}()
	}
	if p.cfg.Proxy.CORS && p.cors(w, r) {
		return
	}
	s, rest, ok := p.route(r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no service for %s (services: %s; use /service/NAME/...)", r.URL.Path, strings.Join(p.names(), ", ")))
		return
	}
	if user, _, hasBasic := r.BasicAuth(); hasBasic && len(s.Admins) > 0 && !slices.Contains(s.Admins, user) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("user %q may not use service %s", user, s.Name))
		return
	}
	ri.prefix = s.prefix
	out := r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))
	u := *r.URL
	u.Path, u.RawPath = rest, ""
	out.URL = &u
	s.rp.ServeHTTP(w, out)
}

// route finds the service of path: /service/NAME/rest, or /NAME/rest as
// the seed's nginx (location /service/ → proxy_pass http://proxy/) sends it.
func (p *Proxy) route(path string) (*service, string, bool) {
	rest, ok := strings.CutPrefix(path, "/service/")
	if !ok {
		rest = strings.TrimPrefix(path, "/")
	}
	name, tail, _ := strings.Cut(rest, "/")
	s, ok := p.services[name]
	return s, "/" + tail, ok
}

func (p *Proxy) names() []string {
	var out []string
	for _, s := range p.cfg.Services {
		out = append(out, s.Name)
	}
	return out
}

// cors adds the CORS headers; it answers preflight requests itself and
// then returns true.
func (p *Proxy) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Add("Vary", "Origin")
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, "+RequestIDHeader)
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}

func (s *service) modifyResponse(resp *http.Response) error {
	if resp.Request != nil {
		resp.Header.Set(TargetHeader, resp.Request.URL.Host)
	}
	// Redirects to absolute paths stay inside the service.
	if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") {
		resp.Header.Set("Location", s.prefix+loc)
	}
	return nil
}

func (s *service) errorHandler(log *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return // the client left
		}
		log.Warn("no target answered", "service", s.Name, "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusBadGateway, fmt.Sprintf("service %s: %v", s.Name, err))
	}
}

// failover sends a request to the service's targets in turn, starting with
// the one that answered last, until one answers.
type failover struct {
	s    *service
	base http.RoundTripper
	log  *slog.Logger
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	replay, replayable, err := bufferBody(req)
	if err != nil {
		return nil, err
	}
	n := len(f.s.targets)
	start := int(f.s.current.Load())
	var failures []string
	for i := range n {
		idx := (start + i) % n
		target := f.s.targets[idx]
		out := req.Clone(req.Context())
		out.URL.Scheme, out.URL.Host, out.Host = target.Scheme, target.Host, ""
		if replay != nil {
			out.Body = replay()
		}
		resp, err := f.base.RoundTrip(out)
		if err == nil {
			if idx != start && f.s.current.CompareAndSwap(int32(start), int32(idx)) {
				f.log.Warn("failover: now using another target", "service", f.s.Name, "target", target.Host,
					"previous", f.s.targets[start].Host)
			}
			info(req.Context()).target = target.Host
			return resp, nil
		}
		if req.Context().Err() != nil {
			return nil, err
		}
		failures = append(failures, fmt.Sprintf("%s: %v", target.Host, rootCause(err)))
		if i == n-1 || !retryable(req.Method, err, replayable) {
			break
		}
		f.log.Warn("target failed; trying the next", "service", f.s.Name, "target", target.Host,
			"next", f.s.targets[(idx+1)%n].Host, "err", rootCause(err))
	}
	return nil, fmt.Errorf("no target answered (%s)", strings.Join(failures, "; "))
}

// retryable reports whether a request that failed with err may go to the
// next target: always when it never reached the target (the connection
// was refused or timed out), otherwise only when repeating it is harmless.
func retryable(method string, err error, replayable bool) bool {
	if !replayable {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// bufferBody reads a request body of up to maxReplay bytes so that it can
// be sent again; replay is nil when there is no body.
func bufferBody(req *http.Request) (replay func() io.ReadCloser, replayable bool, err error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, true, nil
	}
	data, err := io.ReadAll(io.LimitReader(req.Body, maxReplay+1))
	if err != nil {
		return nil, false, fmt.Errorf("read request body: %w", err)
	}
	if len(data) > maxReplay {
		rest := req.Body
		used := false
		return func() io.ReadCloser {
			if used {
				return io.NopCloser(bytes.NewReader(nil))
			}
			used = true
			return struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(data), rest), rest}
		}, false, nil
	}
	req.Body.Close()
	return func() io.ReadCloser { return io.NopCloser(bytes.NewReader(data)) }, true, nil
}

func rootCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return fmt.Errorf("%s: %w", op.Op, op.Err)
	}
	return err
}

func newRequestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// recorder notes the status and size of an answer for the access log; it
// unwraps for http.ResponseController so that streaming still flushes.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// slogWriter sends the standard logger's lines (net/http's) to slog.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	w.log.Warn(strings.TrimSpace(string(p)), "component", "http")
	return len(p), nil
}
