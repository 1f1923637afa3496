package metrics

import (
	"maps"
	"slices"
	"strings"

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

var descTasks = desc("tasks_total", "Tasks of the rules' chains run by this node since it started, by type and outcome (DONE, ERROR).", "type", "outcome")

// AddTaskCounts exports udmg_tasks_total{type,outcome}. counts returns
// totals keyed by (type, outcome) that never decrease, kept across ACTIVE
// periods; it is called at each scrape, from any goroutine.
func (r *Registry) AddTaskCounts(counts func() map[[2]string]uint64) error {
	return r.Register(collectorFunc{[]*prometheus.Desc{descTasks}, func(ch chan<- prometheus.Metric) {
		c := counts()
		keys := slices.SortedFunc(maps.Keys(c), func(a, b [2]string) int {
			return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1])
		})
		for _, k := range keys {
			ch <- prometheus.MustNewConstMetric(descTasks, prometheus.CounterValue, float64(c[k]), k[0], k[1])
		}
	}})
}
