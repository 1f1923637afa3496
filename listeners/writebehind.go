package listeners

import (
	"os"
	"sync"
)

// writeBehindWindow is how much of an upload may sit in the page cache,
// unwritten, per file (twice this at most). Without a bound, a file
// arriving at network speed piles up dirty pages that the fsync at close
// (or the kernel, later) writes back in one burst, and Raft's fsyncs on the
// same disk, the lease renewals among them, wait behind it: with the fsync
// at close alone, renewals took up to 1.5 s during 1 GiB uploads; with
// write-behind, at most 0.25 s in 19 rounds of 20 (make bench, -only=lease;
// 2 MiB windows did no better than 8).
const writeBehindWindow = 8 << 20

// writeBehind starts the writeback of an upload's gap-free prefix one
// window at a time and waits for the window before the previous one, the
// streaming-write pattern: the disk works while data arrives, the dirty
// data of a file stays under two windows, and the fsync at close has
// little left to do.
type writeBehind struct {
	f       *os.File
	mu      sync.Mutex
	started int64 // writeback started for [0, started)
	waited  int64 // written back for [0, waited)
}

// advance is told that [0, contig) of the file is written. The writer
// that completes a window pays for it: it waits, at most, for the
// writeback of the window before, which paces uploads to the disk.
func (w *writeBehind) advance(contig int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for contig-w.started >= writeBehindWindow {
		startWriteback(w.f, w.started, writeBehindWindow)
		w.started += writeBehindWindow
		if w.started-w.waited > 2*writeBehindWindow {
			waitWriteback(w.f, w.waited, writeBehindWindow)
			w.waited += writeBehindWindow
		}
	}
}
