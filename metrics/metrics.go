// Package metrics is the gateway's Prometheus registry, served as GET
// /metrics on the admin API: the node's mode, lease and Raft state (node.go),
// Raft's and memberlist's own metrics bridged from hashicorp/go-metrics,
// the Go runtime, and whatever other packages add (transfers.go).
//
// Other packages plug in with Register (any prometheus.Collector) or, for
// transfers, AddTransferCounts and AddTransferBytes; cmd/udmg-server does
// the wiring.
package metrics

import (
	"fmt"
	"net/http"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes the gateway's own metrics.
const namespace = "udmg"

// Registry holds every collector of one node.
type Registry struct {
	reg *prometheus.Registry
}

// New makes a registry with the Go runtime and process collectors.
func New() *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return r
}

// Register adds a collector; its metric names must not clash with those
// already registered.
func (r *Registry) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return fmt.Errorf("register metrics collector: %w", err)
	}
	return nil
}

// Handler serves the registry in the Prometheus text format (or
// OpenMetrics when the scraper asks for it).
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})
}

// Gatherer is the registry for tests and embedding.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// BridgeRaft routes hashicorp/go-metrics, which raft and memberlist write
// to, into this registry: raft_* and memberlist_* metrics (commit and apply
// times, elections, heartbeats, gossip). go-metrics keeps one global sink
// per process, so only the server's main registry should call this.
// Nothing runs in the background: values are read at each scrape.
func (r *Registry) BridgeRaft() error {
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
		Name:       "udmg_gometrics_bridge",
		Registerer: r.reg,
		// Raft's metric names are a fixed set; keeping them avoids a
		// cleanup goroutine.
		Expiration: 0,
	})
	if err != nil {
		return fmt.Errorf("bridge raft metrics: %w", err)
	}
	cfg := gometrics.DefaultConfig("")
	cfg.EnableHostname = false       // no hostname inside metric names
	cfg.EnableRuntimeMetrics = false // the Go collector covers it, without a goroutine
	if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
		return fmt.Errorf("bridge raft metrics: %w", err)
	}
	return nil
}
