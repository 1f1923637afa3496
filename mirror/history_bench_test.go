package mirror

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkAddHistory is the embedded database's cost of a history row
// (ns/row): written one per transaction, as the engine's archive did, and
// a hundred and a thousand per transaction (a full archiveBatch, as the
// engine's archive writes them under load).
func BenchmarkAddHistory(b *testing.B) {
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, err := Open(context.Background(), Options{Type: "sqlite", Path: filepath.Join(b.TempDir(), "udmg.db")})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rows := make([]HistoryEntry, batch)
			n := 0
			for b.Loop() {
				for i := range rows {
					n++
					rows[i] = HistoryEntry{ID: fmt.Sprint(n), IsServer: true, Protocol: "sftp", Rule: "inbound", Account: "bob",
						Agent: "sftp", LocalPath: fmt.Sprintf("/home/bob/f%d.bin", n), RemotePath: fmt.Sprintf("/f%d.bin", n),
						Filesize: 4096, Status: "DONE", Step: "FINALIZATION", Progress: 4096,
						Start: time.Now(), Stop: time.Now(), NodeID: "n1"}
				}
				if err := s.AddHistory(b.Context(), rows...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/row")
		})
	}
}
