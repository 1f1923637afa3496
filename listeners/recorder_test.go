package listeners

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeRecorder records the ends of the files clients move; endErr is what
// End answers (the cluster failing to commit the transfer's end).
type fakeRecorder struct {
	mu     sync.Mutex
	ends   []fakeEnd
	endErr error
	epoch  uint64 // of the records begun
	last   uint64 // last transfer ID
}

type fakeEnd struct {
	id       uint64
	path     string
	size     int64
	cut      error
	progress int64
}

type fakeRecord struct {
	r        *fakeRecorder
	id       uint64
	epoch    uint64
	path     string
	progress atomic.Int64
}

func (r *fakeRecorder) Begin(f FileTransfer) (Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last++
	return &fakeRecord{r: r, id: r.last, epoch: r.epoch, path: f.Path}, nil
}

// Pending: the cut uploads of the path, newest first, as the engine says
// (no newer complete upload of it).
func (r *fakeRecorder) Pending(f FileTransfer) []Pending {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Pending
	for i := len(r.ends) - 1; i >= 0; i-- {
		e := r.ends[i]
		if e.path != f.Path {
			continue
		}
		if e.cut == nil {
			break
		}
		out = append(out, Pending{ID: e.id, Checkpoint: e.progress})
	}
	return out
}

func (x *fakeRecord) Staging() (uint64, uint64) { return x.id, x.epoch }

func (r *fakeRecorder) done() []fakeEnd {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]fakeEnd(nil), r.ends...)
}

func (x *fakeRecord) Progress(p int64) { x.progress.Store(p) }

func (x *fakeRecord) End(size int64, cut error) error {
	x.r.mu.Lock()
	defer x.r.mu.Unlock()
	x.r.ends = append(x.r.ends, fakeEnd{id: x.id, path: x.path, size: size, cut: cut, progress: x.progress.Load()})
	return x.r.endErr
}

// TestRecordedUploads: a recorded upload large enough for write-behind
// arrives whole and is recorded with its size; when the record's end
// cannot be committed, neither the SFTP close nor the FTP transfer is
// acknowledged.
func TestRecordedUploads(t *testing.T) {
	rec := &fakeRecorder{}
	h := newHarness(t, func(c *Config) { c.Recorder = rec })
	data := randomBytes(t, 3*writeBehindWindow+12345)
	c := h.mustSFTP()
	f, err := c.Create("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close of a recorded upload: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(h.home, "big.bin")); err != nil || sum(got) != sum(data) {
		t.Fatalf("uploaded file differs (%d bytes, %v)", len(got), err)
	}
	if ends := rec.done(); len(ends) != 1 || ends[0].size != int64(len(data)) || ends[0].cut != nil {
		t.Fatalf("recorded ends %+v", ends)
	}

	rec.mu.Lock()
	rec.endErr = errors.New("leadership lost while committing log")
	rec.mu.Unlock()
	f, err = c.Create("unrecorded.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("not yet safe")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err == nil {
		t.Fatal("an SFTP upload whose end was not recorded was acknowledged")
	}
	if err := h.mustFTP().Stor("unrecorded-ftp.bin", bytes.NewReader([]byte("not yet safe"))); err == nil {
		t.Fatal("an FTP upload whose end was not recorded was acknowledged")
	}
}

// TestRecordedFTPDownloads: an FTP download of several sendfile chunks,
// whole and from a REST offset, arrives intact and its record counts every
// byte sent.
func TestRecordedFTPDownloads(t *testing.T) {
	rec := &fakeRecorder{}
	h := newHarness(t, func(c *Config) { c.Recorder = rec })
	data := randomBytes(t, 3*sendChunk+4321)
	c := h.mustFTP() // makes the home
	if err := os.WriteFile(filepath.Join(h.home, "down.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{0, sendChunk + 99} {
		r, err := c.RetrFrom("down.bin", uint64(off))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || sum(got) != sum(data[off:]) {
			t.Fatalf("download from %d: %d bytes, %v", off, len(got), err)
		}
	}
	// The record ends when the server closes the file, after the client
	// has its last byte.
	eventually(t, 10*time.Second, "both downloads recorded", func() bool { return len(rec.done()) == 2 })
	if ends := rec.done(); ends[0].progress != int64(len(data)) || ends[1].progress != int64(len(data)-(sendChunk+99)) {
		t.Fatalf("recorded ends %+v, want progress %d and %d", ends, len(data), len(data)-(sendChunk+99))
	}
}
