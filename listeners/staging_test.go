package listeners

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// stagingFiles lists the staging files of dir.
func stagingFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if IsStaging(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestLateWriteNeverReachesFinalFile: an upload whose node loses the lease
// mid-way is refused at its next write and never put in place, though its
// client closes it; nor is one whose close comes after the lease ended.
func TestLateWriteNeverReachesFinalFile(t *testing.T) {
	rec := &fakeRecorder{}
	h := newHarness(t, func(c *Config) { c.Recorder = rec })

	// SFTP: written, lease lost, one more write, close.
	sc, c, err := h.dialSFTP(user, password)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	f, err := c.Create("/late.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	h.allowed.Store(false)
	if _, err := f.Write([]byte("LATE")); err == nil {
		t.Error("SFTP write after the lease ended succeeded")
	}
	if err := f.Close(); err == nil {
		t.Error("SFTP close after the lease ended acknowledged the upload")
	}
	eventually(t, 5*time.Second, "sessions closed after lease loss", func() bool { return h.svc.Sessions() == 0 })
	if _, err := os.Stat(filepath.Join(h.home, "late.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an upload cut by the lease's end is in place (%v)", err)
	}
	if p := stagedWith(h.home, func(b []byte) bool { return bytes.Contains(b, []byte("LATE")) }); p != "" {
		t.Fatalf("the late write reached the staging file %s", p)
	}

	// The lease ends between the last write and the close: the close
	// fails and nothing is put in place (the session's storage access is
	// checked at the close too).
	h.allowed.Store(true)
	c2 := h.mustSFTP()
	f2, err := c2.Create("/closing.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f2.Write([]byte("complete, but too late")); err != nil {
		t.Fatal(err)
	}
	h.allowed.Store(false)
	if err := f2.Close(); err == nil {
		t.Error("SFTP close after the lease ended acknowledged the upload")
	}
	if _, err := os.Stat(filepath.Join(h.home, "closing.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an upload closed after the lease ended is in place (%v)", err)
	}
	eventually(t, 5*time.Second, "sessions closed after lease loss", func() bool { return h.svc.Sessions() == 0 })

	// FTP: the same through a data connection.
	h.allowed.Store(true)
	fc := h.mustFTP()
	pr, pw := newGatedReader()
	done := make(chan error, 1)
	go func() { done <- fc.Stor("late-ftp.bin", pr) }()
	pw.send([]byte("early"))
	eventually(t, 5*time.Second, "FTP upload reaches its staging file", func() bool {
		return stagedWith(h.home, func(b []byte) bool { return string(b) == "early" }) != ""
	})
	h.allowed.Store(false)
	pw.send([]byte("LATE"))
	pw.close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("FTP upload acknowledged after the lease ended")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("FTP upload did not end after the lease ended")
	}
	if _, err := os.Stat(filepath.Join(h.home, "late-ftp.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an FTP upload cut by the lease's end is in place (%v)", err)
	}
	if p := stagedWith(h.home, func(b []byte) bool { return bytes.Contains(b, []byte("LATE")) }); p != "" {
		t.Fatalf("the late FTP write reached the staging file %s", p)
	}
	h.allowed.Store(true)
}

// gatedReader hands an FTP client's Stor its data chunk by chunk.
type gatedReader struct {
	ch chan []byte
}

func newGatedReader() (*gatedReader, *gatedReader) {
	g := &gatedReader{ch: make(chan []byte)}
	return g, g
}

func (g *gatedReader) send(b []byte) { g.ch <- b }
func (g *gatedReader) close()        { close(g.ch) }

func (g *gatedReader) Read(p []byte) (int, error) {
	b, ok := <-g.ch
	if !ok {
		return 0, io.EOF
	}
	return copy(p, b), nil
}

// TestAcknowledgedUploadIsInPlace: an upload acknowledged to an SFTP or FTP
// client is complete under its final name, with no staging file left; one
// whose end the cluster could not commit is not in place.
func TestAcknowledgedUploadIsInPlace(t *testing.T) {
	rec := &fakeRecorder{}
	h := newHarness(t, func(c *Config) { c.Recorder = rec })
	data := randomBytes(t, 2*writeBehindWindow+777)
	c := h.mustSFTP()
	if err := writeSFTP(c, "/in/../ok.bin", data); err != nil {
		t.Fatal(err)
	}
	if err := h.mustFTP().Stor("ok-ftp.bin", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ok.bin", "ok-ftp.bin"} {
		if b, err := os.ReadFile(filepath.Join(h.home, name)); err != nil || sum(b) != sum(data) {
			t.Fatalf("%s after its acknowledged upload: %d bytes, %v", name, len(b), err)
		}
	}
	if s := stagingFiles(t, h.home); len(s) != 0 {
		t.Fatalf("staging files left after acknowledged uploads: %v", s)
	}
	// An overwrite replaces the file whole, at once.
	if err := writeSFTP(c, "/ok.bin", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(h.home, "ok.bin")); string(b) != "v2" {
		t.Fatalf("overwritten file = %q", b)
	}

	rec.mu.Lock()
	rec.endErr = errors.New("leadership lost while committing log")
	rec.mu.Unlock()
	if err := writeSFTP(c, "/ok.bin", []byte("v3, not recorded")); err == nil {
		t.Fatal("an SFTP upload whose end was not recorded was acknowledged")
	}
	if err := h.mustFTP().Stor("new-ftp.bin", bytes.NewReader(data)); err == nil {
		t.Fatal("an FTP upload whose end was not recorded was acknowledged")
	}
	if b, _ := os.ReadFile(filepath.Join(h.home, "ok.bin")); string(b) != "v2" {
		t.Fatalf("an unacknowledged upload replaced the file: %q", b)
	}
	if _, err := os.Stat(filepath.Join(h.home, "new-ftp.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an unacknowledged upload is in place (%v)", err)
	}
}

// TestResumeFromCheckpoint: an upload cut mid-way is resumed by OpenSSH's
// reput and by FTP REST+STOR from its committed checkpoint (lower than what
// its staging file holds, as after a takeover), and the result is whole.
func TestResumeFromCheckpoint(t *testing.T) {
	sftpBin, err := exec.LookPath("sftp")
	if err != nil {
		t.Skip("OpenSSH sftp client not installed (make deps installs it)")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	rec := &fakeRecorder{epoch: 3}
	h := newHarness(t, func(c *Config) {
		c.Recorder = rec
		c.AuthenticateKey = func(login string, key ssh.PublicKey) bool {
			return login == user && bytes.Equal(key.Marshal(), sshPub.Marshal())
		}
	})
	data := randomBytes(t, 1<<20+4321)
	const checkpoint = 300000

	// cut uploads name with 500000 bytes and sets its committed
	// checkpoint lower, as a takeover finds it.
	cut := func(name string) {
		t.Helper()
		sc, c, err := h.dialSFTP(user, password)
		if err != nil {
			t.Fatal(err)
		}
		f, err := c.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data[:500000]); err != nil {
			t.Fatal(err)
		}
		sc.Close() // the client vanishes: the upload is cut
		eventually(t, 5*time.Second, "the cut upload ends", func() bool {
			for _, e := range rec.done() {
				if e.path == name && e.cut != nil {
					return true
				}
			}
			return false
		})
		rec.mu.Lock()
		rec.ends[len(rec.ends)-1].progress = checkpoint
		rec.mu.Unlock()
		if _, err := os.Stat(filepath.Join(h.home, strings.TrimPrefix(name, "/"))); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("cut upload %s is in place (%v)", name, err)
		}
	}

	// reput with OpenSSH's sftp.
	cut("/reput.bin")
	dir := t.TempDir()
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	knownHosts := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[%s]:%d %s", h.cfg.Host, h.cfg.SFTPPort, ssh.MarshalAuthorizedKey(h.signer.PublicKey()))
	if err := os.WriteFile(knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(dir, "local.bin")
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	batch := filepath.Join(dir, "batch")
	if err := os.WriteFile(batch, []byte("ls -l reput.bin\nreput "+local+" reput.bin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sftpBin, "-b", batch, "-F", "/dev/null",
		"-i", keyFile, "-P", strconv.Itoa(h.cfg.SFTPPort),
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile="+knownHosts, "-o", "StrictHostKeyChecking=yes",
		user+"@"+h.cfg.Host).CombinedOutput()
	if err != nil {
		t.Fatalf("sftp reput failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), strconv.Itoa(checkpoint)) {
		t.Errorf("ls -l of the cut upload does not show its checkpoint %d:\n%s", checkpoint, out)
	}
	if b, err := os.ReadFile(filepath.Join(h.home, "reput.bin")); err != nil || sum(b) != sum(data) {
		t.Fatalf("file resumed with reput: %d bytes, %v", len(b), err)
	}
	ends := rec.done()
	if last := ends[len(ends)-1]; last.cut != nil || last.size != int64(len(data)) {
		t.Fatalf("resumed upload recorded as %+v", last)
	}

	// REST+STOR with an FTP client that asks SIZE first.
	cut("/rest.bin")
	fc := h.mustFTP()
	size, err := fc.FileSize("rest.bin")
	if err != nil || size != checkpoint {
		t.Fatalf("SIZE of the cut upload = %d, %v; want its checkpoint %d", size, err, checkpoint)
	}
	if err := fc.StorFrom("rest.bin", bytes.NewReader(data[size:]), uint64(size)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(h.home, "rest.bin")); err != nil || sum(b) != sum(data) {
		t.Fatalf("file resumed with REST+STOR: %d bytes, %v", len(b), err)
	}
	if s := stagingFiles(t, h.home); len(s) != 0 {
		t.Fatalf("staging files left after the resumed uploads: %v", s)
	}
}

// TestStagingFilesUnreachable: staging files, of an upload in flight or
// left by a cut one, are not listed, and a client naming one exactly can
// neither open, stat, upload to, rename nor remove it, over SFTP or FTP.
func TestStagingFilesUnreachable(t *testing.T) {
	rec := &fakeRecorder{epoch: 9}
	h := newHarness(t, func(c *Config) { c.Recorder = rec })
	c := h.mustSFTP()
	open, err := c.Create("/inflight.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := open.Write([]byte("in flight")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mkdir("/sub"); err != nil {
		t.Fatal(err)
	}
	// One made by hand too, in a sub-directory.
	if err := os.WriteFile(filepath.Join(h.home, "sub", StagingName(42, 1)), []byte("other"), 0o640); err != nil {
		t.Fatal(err)
	}
	staged := stagingFiles(t, h.home)
	if len(staged) != 1 || staged[0] != StagingName(1, 9) {
		t.Fatalf("staging files %v, want %s", staged, StagingName(1, 9))
	}
	names := []string{"/" + staged[0], staged[0], "/sub/" + StagingName(42, 1), "/sub/../" + staged[0]}

	for _, dir := range []string{"/", "/sub"} {
		infos, err := c.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, fi := range infos {
			if IsStaging(fi.Name()) {
				t.Errorf("SFTP lists %s in %s", fi.Name(), dir)
			}
		}
	}
	for _, name := range names {
		if f, err := c.Open(name); err == nil {
			f.Close()
			t.Errorf("SFTP opened %s", name)
		}
		if _, err := c.Stat(name); err == nil {
			t.Errorf("SFTP stat of %s succeeded", name)
		}
		if _, err := c.Lstat(name); err == nil {
			t.Errorf("SFTP lstat of %s succeeded", name)
		}
		if err := writeSFTP(c, name, []byte("x")); err == nil {
			t.Errorf("SFTP upload to %s succeeded", name)
		}
		if err := c.Rename(name, "/stolen.bin"); err == nil {
			t.Errorf("SFTP rename of %s succeeded", name)
		}
		if err := c.PosixRename(name, "/stolen.bin"); err == nil {
			t.Errorf("SFTP posix-rename of %s succeeded", name)
		}
		if err := c.Remove(name); err == nil {
			t.Errorf("SFTP remove of %s succeeded", name)
		}
		if err := c.Chmod(name, 0o600); err == nil {
			t.Errorf("SFTP chmod of %s succeeded", name)
		}
	}
	if err := writeSFTP(c, "/mine.bin", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("/mine.bin", "/"+staged[0]); err == nil {
		t.Error("SFTP rename onto a staging name succeeded")
	}

	fc := h.mustFTP()
	for _, dir := range []string{"/", "/sub"} {
		entries, err := fc.List(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if IsStaging(e.Name) {
				t.Errorf("FTP lists %s in %s", e.Name, dir)
			}
		}
		names, err := fc.NameList(dir)
		if err == nil && slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, StagingPrefix) }) {
			t.Errorf("FTP NLST of %s shows staging files: %v", dir, names)
		}
	}
	for _, name := range names {
		if r, err := fc.Retr(name); err == nil {
			r.Close()
			t.Errorf("FTP RETR of %s succeeded", name)
		}
		if _, err := fc.FileSize(name); err == nil {
			t.Errorf("FTP SIZE of %s succeeded", name)
		}
		if err := fc.Stor(name, strings.NewReader("x")); err == nil {
			t.Errorf("FTP STOR to %s succeeded", name)
		}
		if err := fc.Rename(name, "/stolen-ftp.bin"); err == nil {
			t.Errorf("FTP rename of %s succeeded", name)
		}
		if err := fc.Delete(name); err == nil {
			t.Errorf("FTP DELE of %s succeeded", name)
		}
	}
	if err := fc.Rename("/mine.bin", "/"+staged[0]); err == nil {
		t.Error("FTP rename onto a staging name succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(h.home, staged[0])); string(b) != "in flight" {
		t.Fatalf("the in-flight upload's staging file = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(h.home, "sub", StagingName(42, 1))); string(b) != "other" {
		t.Fatalf("the other staging file = %q", b)
	}
	if err := open.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(h.home, "inflight.bin")); string(b) != "in flight" {
		t.Fatalf("in-flight upload after its close = %q", b)
	}
}

// TestWriteAudit: every write, rename and delete of a session is a JSON
// line with the node, the lease epoch and CLOCK_BOOTTIME, flushed within
// AuditFlushEvery and at Close.
func TestWriteAudit(t *testing.T) {
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	audit, err := OpenAudit(auditFile, "node-a", func() uint64 { return 7 })
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) { c.Audit = audit })
	data := randomBytes(t, 200000)
	c := h.mustSFTP()
	if err := writeSFTP(c, "/audited.bin", data); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("/audited.bin", "/moved.bin"); err != nil {
		t.Fatal(err)
	}
	if err := h.mustFTP().Delete("moved.bin"); err != nil {
		t.Fatal(err)
	}
	// Flushed without Close, within AuditFlushEvery.
	eventually(t, 2*time.Second, "audit lines flushed", func() bool {
		b, _ := os.ReadFile(auditFile)
		return bytes.Contains(b, []byte(`"op":"delete"`))
	})
	if err := audit.Close(); err != nil {
		t.Fatal(err)
	}

	f, err := os.Open(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var written int64
	var ops []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			Node   string `json:"node"`
			Epoch  uint64 `json:"epoch"`
			Op     string `json:"op"`
			Path   string `json:"path"`
			Off    int64  `json:"off"`
			Len    int64  `json:"len"`
			BootNs int64  `json:"bootns"`
			UnixNs int64  `json:"unixns"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if l.Node != "node-a" || l.Epoch != 7 || l.BootNs <= 0 || l.UnixNs <= 0 || !strings.HasPrefix(l.Path, h.cfg.Root) {
			t.Errorf("audit line %s", sc.Text())
		}
		if l.Op == "write" {
			if !IsStaging(filepath.Base(l.Path)) {
				t.Errorf("a write outside a staging file: %s", sc.Text())
			}
			written += l.Len
		}
		if len(ops) == 0 || l.Op != "write" || ops[len(ops)-1] != "write" {
			ops = append(ops, l.Op)
		}
	}
	if written != int64(len(data)) {
		t.Errorf("audited writes cover %d bytes, want %d", written, len(data))
	}
	if want := []string{"create", "write", "rename", "rename", "delete"}; !slices.Equal(ops, want) {
		t.Errorf("audited ops %v, want %v", ops, want)
	}
}
