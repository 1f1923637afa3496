//go:build race

package cluster

// raceEnabled shortens the lease simulation under the race detector, which
// slows it tenfold; make test also runs it at full length without.
const raceEnabled = true
