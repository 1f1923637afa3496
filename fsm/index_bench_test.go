package fsm

import (
	"fmt"
	"testing"
	"time"
)

// liveMachine is a machine whose lease is held at epoch 1, with n live
// server-mode transfers (RUNNING, IDs 1..n), as the large state.
func liveMachine(tb testing.TB, n int) *Machine {
	tb.Helper()
	m := New()
	mustApply(tb, m, lease(OpLeaseAcquire, "a", "s1", 1))
	for i := range n {
		if r := mustApply(tb, m, Command{Op: OpTransferAdd, At: t0, Epoch: 1, Transfer: &Transfer{ID: uint64(i + 1), IsServer: true,
			Status: StatusRunning, Step: StepData}}); r.Err != nil {
			tb.Fatal(r.Err)
		}
	}
	return m
}

// BenchmarkTransferLife applies one transfer's life (added, DONE, then
// archived: each prunes the window) beside 100 and 10,000 live ones; the
// cost per life should not grow with them.
func BenchmarkTransferLife(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("live=%d", n), func(b *testing.B) {
			m := liveMachine(b, n)
			id := uint64(n)
			for b.Loop() {
				id++
				for _, c := range []Command{
					{Op: OpTransferAdd, At: t0, Epoch: 1, Transfer: &Transfer{ID: id, IsServer: true, Status: StatusRunning, Step: StepData}},
					{Op: OpTransferUpdate, At: t0.Add(time.Second), Epoch: 1, Change: change(id, []string{StatusRunning}, StatusDone)},
					{Op: OpTransferArchive, At: t0.Add(time.Second), Epoch: 1, Change: &TransferChange{IDs: []uint64{id}}},
				} {
					if r := mustApply(b, m, c); r.Err != nil {
						b.Fatal(r.Err)
					}
				}
			}
			if got := len(m.State().Transfers); got != n+min(RecentWindow, int(id)-n) {
				b.Fatalf("%d transfers kept, want %d live and the window", got, n)
			}
		})
	}
}

// BenchmarkRestore restores a snapshot of 100 and 10,000 live transfers:
// decoding it and rebuilding the transfer index, which snapshots leave out.
func BenchmarkRestore(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("live=%d", n), func(b *testing.B) {
			snap, err := liveMachine(b, n).Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := New().Restore(snap); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(snap)), "snapshot-bytes")
		})
	}
}

// BenchmarkDecode decodes the one command a small server upload commits:
// its start with its end (OpTransferAdd of a DONE transfer).
func BenchmarkDecode(b *testing.B) {
	data, err := Encode(Command{Op: OpTransferAdd, At: t0, Epoch: 1, Transfer: &Transfer{ID: 123456, IsServer: true,
		Protocol: "sftp", Agent: "sftp", Account: "partner-0042", LocalPath: "partner-0042/in/invoice-000123.xml",
		RemotePath: "/in/invoice-000123.xml", Filesize: 4096, Progress: 4096, Status: StatusDone, Step: StepData,
		Start: t0, Stop: t0.Add(3 * time.Millisecond), NodeID: "udmg-1", Epoch: 1, Attempts: 1, MaxAttempts: 1}})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
