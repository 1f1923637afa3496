package listeners

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteBehindKeepsUpWithTheWriter: writeback is started for every
// complete window and waited for all but the last two, and the file's
// bytes are untouched.
func TestWriteBehindKeepsUpWithTheWriter(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "up.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &writeBehind{f: f}
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	const total = 5*writeBehindWindow + 3<<20
	for off := int64(0); off < total; off += int64(len(chunk)) {
		if _, err := f.WriteAt(chunk, off); err != nil {
			t.Fatal(err)
		}
		w.advance(off + int64(len(chunk)))
		if w.started-w.waited > 2*writeBehindWindow {
			t.Fatalf("at %d: %d bytes started but not waited for", off, w.started-w.waited)
		}
	}
	if w.started != 5*writeBehindWindow || w.waited != 3*writeBehindWindow {
		t.Errorf("started %d, waited %d; want %d and %d", w.started, w.waited, 5*writeBehindWindow, 3*writeBehindWindow)
	}
	got := make([]byte, len(chunk))
	if _, err := f.ReadAt(got, total-int64(len(chunk))); err != nil || !bytes.Equal(got, chunk) {
		t.Errorf("last chunk read back: %v", err)
	}
}
