package httpapi

import (
	"log/slog"
	"net/http"
	"time"
)

// The admin API's connection bounds: a client that is slow to send its
// request (slowloris), slow to read the answer or silent between requests
// is cut off, so that hundreds of them hold no more than their sockets for
// that long and never keep others from being served.
//
// No endpoint streams: `udmgctl transfers show --follow` polls. The longest
// answer is a Basic login that waits out the login throttle (at most 30s),
// then a comparison slot (at most 10s), then a forwarded write (the
// leader's answer and the catch-up wait); WriteTimeout leaves room for all
// of it.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second // headers and body: the bodies are small JSON
	WriteTimeout      = 2 * time.Minute  // from the end of the headers to the end of the answer
	IdleTimeout       = 2 * time.Minute  // between requests on a kept-alive connection
	MaxHeaderBytes    = 64 << 10
)

// NewServer is the admin API's http.Server for h, with the bounds above;
// log receives the server's own errors (TLS handshakes, timeouts).
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.Default()
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.With("component", "admin-api").Handler(), slog.LevelDebug),
	}
}
