package listeners

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
)

const (
	user     = "alice"
	password = "secret"
	secret   = "outside-secret\n"
)

type harness struct {
	t       *testing.T
	svc     *Service
	cfg     Config
	allowed atomic.Bool
	signer  ssh.Signer
	home    string // Root/alice
	outside string // a directory next to Root holding secret.txt
}

func newHarness(t *testing.T, mutate ...func(*Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t}
	h.allowed.Store(true)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h.signer, err = ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "home")
	h.home = filepath.Join(root, user)
	h.outside = filepath.Join(dir, "outside")
	if err := os.MkdirAll(h.outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.outside, "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	pasv := freePortRange(t, 10)
	var logOut io.Writer = io.Discard
	if testing.Verbose() {
		logOut = os.Stderr
	}
	h.cfg = Config{
		Host:         "127.0.0.1",
		SFTPPort:     freePort(t),
		FTPPort:      freePort(t),
		PassiveMin:   pasv,
		PassiveMax:   pasv + 9,
		Root:         root,
		HostKey:      h.signer,
		PasswordHash: quickHashes(t, map[string]string{user: password, "bob": "hunter2"}),
		Allowed:      h.allowed.Load,
		Logger:       slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mutate {
		m(&h.cfg)
	}
	h.svc = New(h.cfg)
	if err := h.svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.svc.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if n := h.svc.Sessions(); n != 0 {
			t.Errorf("Sessions() = %d after Stop", n)
		}
	})
	return h
}

func (h *harness) sftpAddr() string {
	return net.JoinHostPort(h.cfg.Host, strconv.Itoa(h.cfg.SFTPPort))
}

func (h *harness) ftpAddr() string {
	return net.JoinHostPort(h.cfg.Host, strconv.Itoa(h.cfg.FTPPort))
}

func (h *harness) dialSFTP(login, pass string) (*ssh.Client, *sftp.Client, error) {
	conf := &ssh.ClientConfig{
		User:            login,
		Auth:            []ssh.AuthMethod{ssh.Password(pass)},
		HostKeyCallback: ssh.FixedHostKey(h.signer.PublicKey()),
		Timeout:         5 * time.Second,
	}
	sc, err := ssh.Dial("tcp", h.sftpAddr(), conf)
	if err != nil {
		return nil, nil, err
	}
	c, err := sftp.NewClient(sc)
	if err != nil {
		sc.Close()
		return nil, nil, err
	}
	return sc, c, nil
}

func (h *harness) mustSFTP() *sftp.Client {
	h.t.Helper()
	sc, c, err := h.dialSFTP(user, password)
	if err != nil {
		h.t.Fatalf("sftp dial: %v", err)
	}
	h.t.Cleanup(func() {
		c.Close()
		sc.Close()
	})
	return c
}

func (h *harness) dialFTP(login, pass string, opts ...ftp.DialOption) (*ftp.ServerConn, error) {
	c, err := ftp.Dial(h.ftpAddr(), append([]ftp.DialOption{ftp.DialWithTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		return nil, err
	}
	if err := c.Login(login, pass); err != nil {
		c.Quit()
		return nil, err
	}
	return c, nil
}

func (h *harness) mustFTP(opts ...ftp.DialOption) *ftp.ServerConn {
	h.t.Helper()
	c, err := h.dialFTP(user, password, opts...)
	if err != nil {
		h.t.Fatalf("ftp dial: %v", err)
	}
	h.t.Cleanup(func() { c.Quit() })
	return c
}

// checkOutsideIntact asserts nothing outside Root was read-modified.
func (h *harness) checkOutsideIntact() {
	h.t.Helper()
	entries, err := os.ReadDir(h.outside)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "secret.txt" {
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		h.t.Fatalf("outside directory changed: %v", names)
	}
	b, err := os.ReadFile(filepath.Join(h.outside, "secret.txt"))
	if err != nil || string(b) != secret {
		h.t.Fatalf("outside secret changed: %q %v", b, err)
	}
}

// quickHashes is a PasswordHash over logins and their passwords, hashed
// at bcrypt's lowest cost so that the tests' many logins stay fast.
func quickHashes(t *testing.T, passwords map[string]string) func(string) []byte {
	t.Helper()
	hashes := map[string][]byte{}
	for login, pass := range passwords {
		h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		hashes[login] = h
	}
	return func(login string) []byte { return hashes[login] }
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freePortRange finds n consecutive ports bindable on all interfaces (as
// ftpserverlib binds passive ports), below the usual ephemeral range.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for range 200 {
		base := 20000 + mrand.IntN(12000)
		var ls []net.Listener
		ok := true
		for p := base; p < base+n; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free passive port range")
	return 0
}

// eventually polls cond until it holds or the timeout expires.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

// stagedWith is the path of a staging file in dir whose contents satisfy
// ok, or "".
func stagedWith(dir string, ok func([]byte) bool) string {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !IsStaging(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if b, err := os.ReadFile(p); err == nil && ok(b) {
			return p
		}
	}
	return ""
}

func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// closedWithoutServing reports whether the server closes a new connection
// without sending a single byte (no SSH banner, no FTP 220).
func closedWithoutServing(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true // refused is fine too
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64)
	n, err := c.Read(b)
	return n == 0 && err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestSSHBanner(t *testing.T) {
	h := newHarness(t)
	c, err := net.DialTimeout("tcp", h.sftpAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "SSH-2.0-Go") {
		t.Fatalf("banner %q does not start with SSH-2.0-Go", line)
	}
	eventually(t, 5*time.Second, "one session while the banner connection is open", func() bool { return h.svc.Sessions() == 1 })
	c.Close()
	eventually(t, 5*time.Second, "no session after close", func() bool { return h.svc.Sessions() == 0 })
}

func TestSFTPTransfers(t *testing.T) {
	h := newHarness(t)
	c := h.mustSFTP()

	data := randomBytes(t, 3<<20+1234)
	f, err := c.Create("/upload.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join(h.home, "upload.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if sum(onDisk) != sum(data) {
		t.Fatalf("stored file differs: %d bytes vs %d", len(onDisk), len(data))
	}
	fi, err := os.Stat(h.home)
	if err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("home %v mode %v", err, fi.Mode())
	}

	// Download, checksum.
	rf, err := c.Open("upload.bin")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := rf.WriteTo(&got); err != nil {
		t.Fatal(err)
	}
	rf.Close()
	if got.Len() != len(data) || sum(got.Bytes()) != sum(data) {
		t.Fatalf("downloaded %d bytes, checksum mismatch", got.Len())
	}

	// mkdir, list, stat, rename, remove.
	if err := c.Mkdir("/in"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("/upload.bin", "/in/renamed.bin"); err != nil {
		t.Fatal(err)
	}
	entries, err := c.ReadDir("/in")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "renamed.bin" || entries[0].Size() != int64(len(data)) {
		t.Fatalf("list: %+v", entries)
	}
	st, err := c.Stat("in/renamed.bin")
	if err != nil || st.Size() != int64(len(data)) {
		t.Fatalf("stat: %v %v", st, err)
	}
	// Plain rename refuses to overwrite; posix-rename does.
	if err := writeSFTP(c, "/other.bin", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("/other.bin", "/in/renamed.bin"); err == nil {
		t.Fatal("rename over an existing file succeeded")
	}
	if err := c.PosixRename("/other.bin", "/in/renamed.bin"); err != nil {
		t.Fatal(err)
	}

	// setstat(truncate), chmod, chtimes.
	if err := writeSFTP(c, "/t.bin", data[:1000]); err != nil {
		t.Fatal(err)
	}
	if err := c.Truncate("/t.bin", 10); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(h.home, "t.bin")); err != nil || fi.Size() != 10 {
		t.Fatalf("truncate: %v %v", fi, err)
	}
	if err := c.Chmod("/t.bin", 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Unix(1700000000, 0)
	if err := c.Chtimes("/t.bin", mt, mt); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(h.home, "t.bin")); fi.Mode().Perm() != 0o600 || !fi.ModTime().Equal(mt) {
		t.Fatalf("setstat: %v %v", fi.Mode(), fi.ModTime())
	}

	// Resumed upload: write a prefix, then reopen without truncation and
	// continue at the offset the server reports.
	if err := writeSFTP(c, "/resume.bin", data[:100000]); err != nil {
		t.Fatal(err)
	}
	st, err = c.Stat("/resume.bin")
	if err != nil {
		t.Fatal(err)
	}
	wf, err := c.OpenFile("/resume.bin", os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wf.Seek(st.Size(), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := wf.ReadFrom(bytes.NewReader(data[st.Size():])); err != nil {
		t.Fatal(err)
	}
	wf.Close()
	if b, _ := os.ReadFile(filepath.Join(h.home, "resume.bin")); sum(b) != sum(data) {
		t.Fatalf("resumed upload differs (%d bytes)", len(b))
	}

	// Append mode.
	af, err := c.OpenFile("/t.bin", os.O_WRONLY|os.O_APPEND)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := af.Write([]byte("APPENDED")); err != nil {
		t.Fatal(err)
	}
	af.Close()
	if b, _ := os.ReadFile(filepath.Join(h.home, "t.bin")); string(b) != string(data[:10])+"APPENDED" {
		t.Fatalf("append: %q", b)
	}

	// rm, rmdir.
	if err := c.Remove("/in"); err == nil {
		t.Fatal("remove of a directory succeeded")
	}
	if err := c.Remove("/in/renamed.bin"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveDirectory("/in"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.home, "in")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rmdir: %v", err)
	}

	// Wrong password.
	if _, _, err := h.dialSFTP(user, "wrong"); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if _, _, err := h.dialSFTP("../alice", password); err == nil {
		t.Fatal("login with a path as user name succeeded")
	}
}

func writeSFTP(c *sftp.Client, name string, b []byte) error {
	f, err := c.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readSFTP(c *sftp.Client, name string) ([]byte, error) {
	f, err := c.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func TestSFTPJail(t *testing.T) {
	h := newHarness(t)
	c := h.mustSFTP() // creates the home
	if err := os.Symlink(h.outside, filepath.Join(h.home, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(h.home, "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside/secret.txt", filepath.Join(h.home, "rel")); err != nil {
		t.Fatal(err)
	}
	etcPasswd, _ := os.ReadFile("/etc/passwd")

	for _, p := range []string{
		"../../outside/secret.txt", "/../../outside/secret.txt", "../../../etc/passwd",
		"/etc/passwd", "link/secret.txt", "/link/secret.txt", "passwd", "rel",
	} {
		b, err := readSFTP(c, p)
		if err == nil {
			t.Errorf("read %q succeeded: %q", p, b)
		}
		if len(b) > 0 && (string(b) == secret || bytes.Equal(b, etcPasswd)) {
			t.Errorf("read %q leaked outside content", p)
		}
	}
	for _, p := range []string{"../../outside/new.txt", "link/new.txt", "/link/secret.txt", "rel"} {
		if err := writeSFTP(c, p, []byte("pwned")); err == nil {
			t.Errorf("write %q succeeded", p)
		}
	}
	if _, err := c.ReadDir("link"); err == nil {
		t.Error("listing through a symlink out of the home succeeded")
	}
	if _, err := c.Stat("link/secret.txt"); err == nil {
		t.Error("stat through a symlink out of the home succeeded")
	}
	if err := c.Rename("link/secret.txt", "stolen.txt"); err == nil {
		t.Error("rename from outside succeeded")
	}
	if err := c.Remove("link/secret.txt"); err == nil {
		t.Error("remove outside succeeded")
	}
	if err := c.Mkdir("link/dir"); err == nil {
		t.Error("mkdir outside succeeded")
	}
	if err := c.Truncate("link/secret.txt", 0); err == nil {
		t.Error("truncate outside succeeded")
	}
	if err := c.Symlink("/etc", "etc"); err == nil {
		t.Error("symlink creation succeeded")
	}
	// Absolute paths mean "absolute within the home".
	if err := writeSFTP(c, "/etc-passwd-copy", []byte("inside")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(h.home, "etc-passwd-copy")); string(b) != "inside" {
		t.Fatal("absolute path did not land in the home")
	}
	if wd, err := c.Getwd(); err != nil || wd != "/" {
		t.Fatalf("getwd %q %v", wd, err)
	}
	h.checkOutsideIntact()
	if _, err := os.Stat(filepath.Join(h.outside, "..", "home", "new.txt")); err == nil {
		t.Fatal("file written in Root itself")
	}
}

func TestFTPTransfers(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []ftp.DialOption
	}{
		{"EPSV", nil},
		{"PASV", []ftp.DialOption{ftp.DialWithDisabledEPSV(true)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			c := h.mustFTP(tc.opts...)
			data := randomBytes(t, 2<<20+77)
			if err := c.Stor("up.bin", bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(h.home, "up.bin")); sum(b) != sum(data) {
				t.Fatalf("stored file differs (%d bytes)", len(b))
			}
			r, err := c.Retr("/up.bin")
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || sum(got) != sum(data) {
				t.Fatalf("download: %d bytes, %v", len(got), err)
			}
			if err := c.MakeDir("dir"); err != nil {
				t.Fatal(err)
			}
			if err := c.Rename("up.bin", "dir/up2.bin"); err != nil {
				t.Fatal(err)
			}
			entries, err := c.List("/dir")
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name != "up2.bin" || entries[0].Size != uint64(len(data)) {
				t.Fatalf("list: %+v", entries)
			}
			if n, err := c.FileSize("dir/up2.bin"); err != nil || n != int64(len(data)) {
				t.Fatalf("size %d %v", n, err)
			}
			// Resume with REST + STOR, and APPE.
			if err := c.Stor("res.bin", bytes.NewReader(data[:5000])); err != nil {
				t.Fatal(err)
			}
			if err := c.StorFrom("res.bin", bytes.NewReader(data[5000:]), 5000); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(h.home, "res.bin")); sum(b) != sum(data) {
				t.Fatalf("resumed upload differs (%d bytes)", len(b))
			}
			if err := c.Append("res.bin", strings.NewReader("tail")); err != nil {
				t.Fatal(err)
			}
			if fi, _ := os.Stat(filepath.Join(h.home, "res.bin")); fi.Size() != int64(len(data))+4 {
				t.Fatalf("append size %d", fi.Size())
			}
			if err := c.ChangeDir("dir"); err != nil {
				t.Fatal(err)
			}
			if err := c.Delete("up2.bin"); err != nil {
				t.Fatal(err)
			}
			if err := c.ChangeDir(".."); err != nil {
				t.Fatal(err)
			}
			if err := c.RemoveDir("dir"); err != nil {
				t.Fatal(err)
			}
			if _, err := h.dialFTP(user, "wrong"); err == nil {
				t.Fatal("login with a wrong password succeeded")
			}
		})
	}
}

func TestFTPJail(t *testing.T) {
	h := newHarness(t)
	c := h.mustFTP()
	if err := os.Symlink(h.outside, filepath.Join(h.home, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(h.home, "passwd")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../../outside/secret.txt", "/../../outside/secret.txt", "/etc/passwd", "link/secret.txt", "passwd"} {
		r, err := c.Retr(p)
		if err == nil {
			b, _ := io.ReadAll(r)
			r.Close()
			t.Errorf("RETR %q succeeded: %q", p, b)
		}
	}
	for _, p := range []string{"../../outside/new.txt", "link/new.txt", "link/secret.txt"} {
		if err := c.Stor(p, strings.NewReader("pwned")); err == nil {
			t.Errorf("STOR %q succeeded", p)
		}
	}
	if err := c.ChangeDir("link"); err == nil {
		t.Error("CWD through a symlink out of the home succeeded")
	}
	if _, err := c.List("link"); err == nil {
		t.Error("LIST through a symlink out of the home succeeded")
	}
	if err := c.Delete("link/secret.txt"); err == nil {
		t.Error("DELE outside succeeded")
	}
	if err := c.Rename("link/secret.txt", "stolen"); err == nil {
		t.Error("RNFR/RNTO from outside succeeded")
	}
	if err := c.ChangeDir("../.."); err != nil {
		t.Fatal(err) // stays at the home's "/"
	}
	if dir, err := c.CurrentDir(); err != nil || dir != "/" {
		t.Fatalf("pwd %q %v", dir, err)
	}
	h.checkOutsideIntact()
}

// TestFTPPassiveReply checks the PASV reply: PublicHost and the port range.
func TestFTPPassiveReply(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PublicHost = "127.0.0.3" })
	conn, err := textproto.Dial("tcp", h.ftpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	expect := func(code int, cmd string, args ...any) string {
		t.Helper()
		if cmd != "" {
			if _, err := conn.Cmd(cmd, args...); err != nil {
				t.Fatal(err)
			}
		}
		_, msg, err := conn.ReadResponse(code)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return msg
	}
	expect(220, "")
	expect(331, "USER %s", user)
	expect(230, "PASS %s", password)
	msg := expect(227, "PASV")
	open, end := strings.Index(msg, "("), strings.Index(msg, ")")
	parts := strings.Split(msg[open+1:end], ",")
	if strings.Join(parts[:4], ".") != "127.0.0.3" {
		t.Fatalf("PASV reply %q does not carry PublicHost", msg)
	}
	p1, _ := strconv.Atoi(parts[4])
	p2, _ := strconv.Atoi(parts[5])
	if port := p1*256 + p2; port < h.cfg.PassiveMin || port > h.cfg.PassiveMax {
		t.Fatalf("passive port %d outside %d-%d", port, h.cfg.PassiveMin, h.cfg.PassiveMax)
	}
	expect(421, "PORT 127,0,0,1,200,10") // active mode is disabled
}

func TestOpenSSHSFTPClient(t *testing.T) {
	sftpBin, err := exec.LookPath("sftp")
	if err != nil {
		t.Skip("OpenSSH sftp client not installed")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) {
		c.AuthenticateKey = func(login string, key ssh.PublicKey) bool {
			return login == user && bytes.Equal(key.Marshal(), sshPub.Marshal())
		}
	})
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
	data := randomBytes(t, 1<<20+5)
	local := filepath.Join(dir, "local.bin")
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(dir, "back.bin")
	batch := filepath.Join(dir, "batch")
	script := fmt.Sprintf("mkdir drop\nput %s drop/remote.bin\nls -l drop\nget drop/remote.bin %s\nrename drop/remote.bin drop/final.bin\n", local, back)
	if err := os.WriteFile(batch, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sftpBin, "-b", batch, "-F", "/dev/null",
		"-i", keyFile, "-P", strconv.Itoa(h.cfg.SFTPPort),
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile="+knownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "Ciphers=aes128-gcm@openssh.com",
		user+"@"+h.cfg.Host)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sftp batch failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "remote.bin") {
		t.Fatalf("ls output lacks the file:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(h.home, "drop", "final.bin")); sum(b) != sum(data) {
		t.Fatalf("uploaded file differs (%d bytes)", len(b))
	}
	if b, _ := os.ReadFile(back); sum(b) != sum(data) {
		t.Fatalf("downloaded file differs (%d bytes)", len(b))
	}
	eventually(t, 5*time.Second, "OpenSSH session closed", func() bool { return h.svc.Sessions() == 0 })
}

func TestStartBindFailureNamesAddress(t *testing.T) {
	sftpPort, ftpPort := freePort(t), freePort(t)
	busy, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ftpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	svc := New(Config{Host: "127.0.0.1", SFTPPort: sftpPort, FTPPort: ftpPort, Root: t.TempDir(), HostKey: signer,
		Logger: slog.New(slog.DiscardHandler)})
	err = svc.Start()
	want := fmt.Sprintf("listen ftp 127.0.0.1:%d: address already in use", ftpPort)
	if err == nil || err.Error() != want {
		t.Fatalf("Start error %v, want %q", err, want)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("error does not wrap EADDRINUSE: %v", err)
	}
	if svc.Running() {
		t.Fatal("service running after a failed Start")
	}
	// The SFTP port opened before the failure was released.
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", sftpPort))
	if err != nil {
		t.Fatalf("SFTP port still bound after failed Start: %v", err)
	}
	l.Close()
	if err := svc.Stop(); err != nil {
		t.Fatalf("Stop on a stopped service: %v", err)
	}
}

func TestStopClosesSessions(t *testing.T) {
	h := newHarness(t)
	for cycle := range 3 {
		sc, sftpc, err := h.dialSFTP(user, password)
		if err != nil {
			t.Fatalf("cycle %d: sftp: %v", cycle, err)
		}
		ftpc, err := h.dialFTP(user, password)
		if err != nil {
			t.Fatalf("cycle %d: ftp: %v", cycle, err)
		}
		idle, err := h.dialFTP("bob", "hunter2") // logged in, no transfer
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sftpc.ReadDir("/"); err != nil {
			t.Fatal(err)
		}
		// An SFTP upload left open, an FTP upload in flight on a data connection.
		wf, err := sftpc.Create("/open.bin")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := wf.Write([]byte("first")); err != nil {
			t.Fatal(err)
		}
		pr, pw := io.Pipe()
		storDone := make(chan error, 1)
		go func() { storDone <- ftpc.Stor("inflight.bin", pr) }()
		if _, err := pw.Write(make([]byte, 64<<10)); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "in-flight FTP upload reaches the disk", func() bool {
			return stagedWith(h.home, func(b []byte) bool { return len(b) == 64<<10 }) != ""
		})
		if n := h.svc.Sessions(); n != 3 {
			t.Fatalf("Sessions() = %d, want 3", n)
		}

		begin := time.Now()
		if err := h.svc.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if d := time.Since(begin); d > 5*time.Second { // a Stop that waited for its clients would hang
			t.Errorf("Stop took %s", d)
		}
		if n := h.svc.Sessions(); n != 0 {
			t.Fatalf("Sessions() = %d after Stop", n)
		}
		if _, err := wf.Write([]byte("second")); err == nil {
			t.Error("SFTP write succeeded after Stop")
		}
		if _, err := sftpc.Stat("/"); err == nil {
			t.Error("SFTP stat succeeded after Stop")
		}
		pw.Close() // clean end of data: the failure must come from the server side
		select {
		case err := <-storDone:
			if err == nil {
				t.Error("in-flight FTP upload succeeded across Stop")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("in-flight FTP upload did not fail after Stop")
		}
		if err := idle.NoOp(); err == nil {
			t.Error("FTP NOOP succeeded after Stop")
		}
		if _, err := ftpc.List("/"); err == nil {
			t.Error("FTP LIST succeeded after Stop")
		}
		if !refused(h.sftpAddr()) || !refused(h.ftpAddr()) {
			t.Fatal("ports still accept connections after Stop")
		}
		// The passive range is free again (no passive listener left behind).
		for p := h.cfg.PassiveMin; p <= h.cfg.PassiveMax; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
			if err != nil {
				t.Fatalf("passive port %d still bound after Stop: %v", p, err)
			}
			l.Close()
		}
		if err := h.svc.Stop(); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		wf.Close()
		sftpc.Close()
		sc.Close()
		ftpc.Quit()
		idle.Quit()

		if err := h.svc.Start(); err != nil {
			t.Fatalf("restart: %v", err)
		}
		sc2, c, err := h.dialSFTP(user, password)
		if err != nil {
			t.Fatalf("SFTP after restart: %v", err)
		}
		// The upload Stop cut is not in place: it waits in its staging
		// file for the client to resume it.
		if b, err := readSFTP(c, "/open.bin"); err == nil {
			t.Fatalf("after restart: an upload cut by Stop is in place (%q)", b)
		}
		if stagedWith(h.home, func(b []byte) bool { return string(b) == "first" }) == "" {
			t.Fatal("after restart: the cut upload's staging file does not hold its data")
		}
		f, err := h.dialFTP(user, password)
		if err != nil {
			t.Fatalf("FTP after restart: %v", err)
		}
		if err := f.Stor("again.txt", strings.NewReader("ok")); err != nil {
			t.Fatalf("FTP after restart: %v", err)
		}
		c.Close()
		sc2.Close()
		if err := f.Quit(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "clients of the restarted service gone", func() bool { return h.svc.Sessions() == 0 })
	}
}

func TestLeaseLost(t *testing.T) {
	h := newHarness(t)

	// In-flight SFTP upload: the next write after the lease is lost fails
	// and the session is closed.
	sc, c, err := h.dialSFTP(user, password)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	f, err := c.Create("/sftp-inflight.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}

	// In-flight FTP upload on an open data connection.
	ftpc, err := h.dialFTP(user, password)
	if err != nil {
		t.Fatal(err)
	}
	defer ftpc.Quit()
	pr, pw := io.Pipe()
	storDone := make(chan error, 1)
	go func() { storDone <- ftpc.Stor("ftp-inflight.bin", pr) }()
	if _, err := pw.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	var ftpStaged string
	eventually(t, 5*time.Second, "in-flight FTP upload reaches the disk", func() bool {
		ftpStaged = stagedWith(h.home, func(b []byte) bool { return len(b) == 64<<10 })
		return ftpStaged != ""
	})
	sftpStaged := stagedWith(h.home, func(b []byte) bool { return string(b) == "before" })
	if sftpStaged == "" {
		t.Fatal("the SFTP upload's staging file does not hold its first write")
	}

	h.allowed.Store(false)

	if _, err := f.Write([]byte("after")); err == nil {
		t.Error("SFTP write succeeded without the lease")
	}
	moreDone := make(chan struct{})
	go func() {
		// The server refuses this chunk and drops the session; the write
		// may block once the data connection is gone: pw.Close ends it.
		defer close(moreDone)
		_, _ = pw.Write(make([]byte, 64<<10))
	}()
	eventually(t, 5*time.Second, "sessions closed after lease loss", func() bool { return h.svc.Sessions() == 0 })
	pw.Close() // clean end of data: the failure must come from the server side
	<-moreDone
	select {
	case err := <-storDone:
		if err == nil {
			t.Error("FTP upload completed without the lease")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("FTP upload did not fail after the lease was lost")
	}
	if b, _ := os.ReadFile(sftpStaged); string(b) != "before" {
		t.Errorf("SFTP staging file after lease loss: %q", b)
	}
	if fi, _ := os.Stat(ftpStaged); fi.Size() != 64<<10 {
		t.Errorf("FTP staging file grew after lease loss: %d", fi.Size())
	}
	for _, name := range []string{"sftp-inflight.bin", "ftp-inflight.bin"} {
		if _, err := os.Stat(filepath.Join(h.home, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is in place after the lease was lost (%v)", name, err)
		}
	}

	// New connections are closed without serving: no banner, no 220.
	if !closedWithoutServing(t, h.sftpAddr()) {
		t.Error("SFTP connection served without the lease")
	}
	if !closedWithoutServing(t, h.ftpAddr()) {
		t.Error("FTP connection served without the lease")
	}
	if n := h.svc.Sessions(); n != 0 {
		t.Errorf("Sessions() = %d without the lease", n)
	}

	// Lease back: serving resumes.
	h.allowed.Store(true)
	c2 := h.mustSFTP()
	if err := writeSFTP(c2, "/back.txt", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	f2 := h.mustFTP()
	if err := f2.Stor("back2.txt", strings.NewReader("ok")); err != nil {
		t.Fatal(err)
	}
}

func TestRelPath(t *testing.T) {
	for in, want := range map[string]string{
		"": ".", "/": ".", ".": ".", "..": ".", "../../etc/passwd": "etc/passwd",
		"/a/../../b": "b", "a/b/": "a/b", `..\..\x`: "x", "/etc/passwd": "etc/passwd",
	} {
		if got := relPath(in); got != want {
			t.Errorf("relPath(%q) = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", `a\b`, "a\x00b", "a\nb"} {
		if validLogin(bad) {
			t.Errorf("validLogin(%q) = true", bad)
		}
	}
}

// TestStopDuringHandshakeAndPassiveWait: connections that never finish the
// SSH handshake or the FTP greeting, and an FTP STOR waiting for its passive
// data connection (ftpserverlib holds the transfer lock for up to 30s there),
// must not delay Stop.
func TestStopDuringHandshakeAndPassiveWait(t *testing.T) {
	h := newHarness(t)
	var raws []net.Conn
	for _, addr := range []string{h.sftpAddr(), h.ftpAddr()} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		raws = append(raws, c)
	}
	conn, err := textproto.Dial("tcp", h.ftpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, step := range []struct {
		cmd  string
		code int
	}{{"", 220}, {"USER " + user, 331}, {"PASS " + password, 230}, {"TYPE I", 200}, {"PASV", 227}, {"STOR waiting.bin", 0}} {
		if step.cmd != "" {
			if _, err := conn.Cmd("%s", step.cmd); err != nil {
				t.Fatal(err)
			}
		}
		if step.code != 0 {
			if _, _, err := conn.ReadResponse(step.code); err != nil {
				t.Fatalf("%s: %v", step.cmd, err)
			}
		}
	}
	eventually(t, 5*time.Second, "STOR opened its file and waits for the data connection", func() bool {
		return stagedWith(h.home, func([]byte) bool { return true }) != ""
	})
	eventually(t, 5*time.Second, "3 sessions", func() bool { return h.svc.Sessions() == 3 })

	begin := time.Now()
	if err := h.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 5*time.Second { // a Stop that waited for its clients would hang
		t.Fatalf("Stop took %s", d)
	}
	if n := h.svc.Sessions(); n != 0 {
		t.Fatalf("Sessions() = %d after Stop", n)
	}
	for _, c := range raws {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("raw connection not closed by Stop: %v", err)
		}
	}
}

// TestStopTimeout: a storage call that does not return (hung NFS, here a
// blocked lease check) makes Stop return an error after StopTimeout; the
// session stays counted until it really ends.
func TestStopTimeout(t *testing.T) {
	var gate atomic.Pointer[chan struct{}]
	entered := make(chan struct{}, 1)
	var allow atomic.Bool
	allow.Store(true)
	h := newHarness(t, func(c *Config) {
		c.StopTimeout = 300 * time.Millisecond
		c.Allowed = func() bool {
			if ch := gate.Load(); ch != nil {
				select {
				case entered <- struct{}{}:
				default:
				}
				<-*ch
			}
			return allow.Load()
		}
	})
	sc, c, err := h.dialSFTP(user, password)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	f, err := c.Create("/slow.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	gate.Store(&ch)
	writeErr := make(chan error, 1)
	go func() {
		_, err := f.Write([]byte("b"))
		writeErr <- err
	}()
	<-entered

	err = h.svc.Stop()
	if err == nil || !strings.Contains(err.Error(), "still open") {
		t.Fatalf("Stop = %v, want a timeout error", err)
	}
	if h.svc.Running() {
		t.Fatal("still running after Stop")
	}
	if n := h.svc.Sessions(); n != 1 {
		t.Fatalf("Sessions() = %d while a storage call is stuck", n)
	}
	allow.Store(false)
	gate.Store(nil)
	close(ch)
	eventually(t, 5*time.Second, "stuck session ends", func() bool { return h.svc.Sessions() == 0 })
	if err := <-writeErr; err == nil {
		t.Fatal("write stuck across Stop succeeded")
	}
	if b, _ := os.ReadFile(stagedWith(h.home, func([]byte) bool { return true })); string(b) != "a" {
		t.Fatalf("staging file = %q", b)
	}
	if _, err := os.Stat(filepath.Join(h.home, "slow.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an upload cut by Stop is in place (%v)", err)
	}
	allow.Store(true)
	if err := h.svc.Start(); err != nil {
		t.Fatal(err)
	}
}

// serverTLS is an FTPS server configuration with a fresh self-signed
// certificate for 127.0.0.1.
func serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "udmg-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}}
}

// TestFTPSRequired: with FTPTLSRequired a client in clear cannot log in;
// one that says AUTH TLS first can.
func TestFTPSRequired(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.FTPTLS, c.FTPTLSRequired = serverTLS(t), true })
	if c, err := h.dialFTP(user, password); err == nil {
		c.Quit()
		t.Fatal("a login in clear was accepted on a server that requires TLS")
	}
	c := h.mustFTP(ftp.DialWithExplicitTLS(&tls.Config{InsecureSkipVerify: true}))
	if err := c.Stor("tls.bin", bytes.NewReader([]byte("over TLS"))); err != nil {
		t.Fatal(err)
	}
}

func TestExplicitFTPS(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.FTPTLS = serverTLS(t) })
	c := h.mustFTP(ftp.DialWithExplicitTLS(&tls.Config{InsecureSkipVerify: true}))
	data := randomBytes(t, 300<<10)
	if err := c.Stor("tls.bin", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	r, err := c.Retr("tls.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || sum(got) != sum(data) {
		t.Fatalf("FTPS round trip: %d bytes, %v", len(got), err)
	}
	if err := h.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.NoOp(); err == nil {
		t.Fatal("FTPS session survived Stop")
	}
}
