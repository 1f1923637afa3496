package metrics

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// TransferStates are always exported, at 0 when no transfer is in them, so
// that dashboards and rate() see every series from the start.
var TransferStates = []string{"PLANNED", "RUNNING", "PAUSED", "INTERRUPTED", "ERROR", "DONE", "CANCELLED"}

var (
	descTransfers     = desc("transfers", "Transfers the cluster knows of (live ones and the recent window of finished ones), by state.", "state")
	descTransferBytes = desc("transfer_bytes_total", "Bytes moved by transfers through this node since it started, by direction (sent, received).", "direction")
)

// AddTransferCounts exports udmg_transfers{state}. counts is called at each
// scrape, from any goroutine; states it leaves out are 0.
func (r *Registry) AddTransferCounts(counts func() map[string]int) error {
	return r.Register(collectorFunc{[]*prometheus.Desc{descTransfers}, func(ch chan<- prometheus.Metric) {
		c := counts()
		states := slices.Clone(TransferStates)
		for _, s := range slices.Sorted(maps.Keys(c)) {
			if !slices.Contains(states, s) {
				states = append(states, s)
			}
		}
		for _, s := range states {
			ch <- prometheus.MustNewConstMetric(descTransfers, prometheus.GaugeValue, float64(c[s]), s)
		}
	}})
}

// AddTransferBytes exports udmg_transfer_bytes_total{direction}. moved
// returns the bytes sent and received by transfers since the process
// started (totals that never decrease, kept across ACTIVE periods); it is
// called at each scrape, from any goroutine.
func (r *Registry) AddTransferBytes(moved func() (sent, received uint64)) error {
	return r.Register(collectorFunc{[]*prometheus.Desc{descTransferBytes}, func(ch chan<- prometheus.Metric) {
		sent, received := moved()
		ch <- prometheus.MustNewConstMetric(descTransferBytes, prometheus.CounterValue, float64(sent), "sent")
		ch <- prometheus.MustNewConstMetric(descTransferBytes, prometheus.CounterValue, float64(received), "received")
	}})
}

// collectorFunc is a collector of fixed descriptions whose values are read
// at each scrape.
type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(ch chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
