package listeners

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// fakeRecorder records the ends of the files clients move; endErr is what
// End answers (the cluster failing to commit the transfer's end).
type fakeRecorder struct {
	mu     sync.Mutex
	ends   []fakeEnd
	endErr error
}

type fakeEnd struct {
	path string
	size int64
	cut  error
}

type fakeRecord struct {
	r    *fakeRecorder
	path string
}

func (r *fakeRecorder) Begin(f FileTransfer) (Record, error) {
	return &fakeRecord{r: r, path: f.Path}, nil
}

func (r *fakeRecorder) done() []fakeEnd {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]fakeEnd(nil), r.ends...)
}

func (x *fakeRecord) Progress(int64) {}

func (x *fakeRecord) End(size int64, cut error) error {
	x.r.mu.Lock()
	defer x.r.mu.Unlock()
	x.r.ends = append(x.r.ends, fakeEnd{path: x.path, size: size, cut: cut})
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
