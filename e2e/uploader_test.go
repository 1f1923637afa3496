package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

const (
	uploadEvery   = 100 * time.Millisecond // pause between acknowledged uploads
	retryEvery    = 50 * time.Millisecond  // pause after a failed attempt
	uploadTimeout = 5 * time.Second        // one connection set-up or one upload
)

// Ack is an upload the server acknowledged (the file's close succeeded).
type Ack struct {
	Tag         string
	Name        string
	Sum         [32]byte
	Start, Done time.Time
}

// Failure is one attempt that did not end in an acknowledgement.
type Failure struct {
	Tag   string
	At    time.Time
	Phase string // connect or upload
	Err   string
}

// Uploader keeps uploading files through the load balancer over SFTP and
// records every acknowledged upload with its checksum.
type Uploader struct {
	addr, user, pass string

	mu       sync.Mutex
	tag      string
	seq      int
	acks     []Ack
	fails    []Failure
	hostKeys map[string]time.Time // fingerprint -> first seen
	begun    int                  // uploads started
	ended    int                  // uploads acknowledged or failed

	stop, done chan struct{}
	once       sync.Once
}

// StartUploader starts uploading until Stop.
func StartUploader(addr, user, pass string) *Uploader {
	u := &Uploader{addr: addr, user: user, pass: pass, tag: "warmup", hostKeys: map[string]time.Time{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go u.loop()
	return u
}

// SetTag names the files uploaded from now on (one tag per scenario).
func (u *Uploader) SetTag(tag string) {
	u.mu.Lock()
	u.tag = tag
	u.mu.Unlock()
}

// Settle waits until the upload in flight when it was called (if any) has
// ended, so that no upload started under an earlier tag is still running.
func (u *Uploader) Settle() {
	u.mu.Lock()
	target := u.begun
	u.mu.Unlock()
	deadline := time.Now().Add(2 * uploadTimeout)
	for time.Now().Before(deadline) {
		u.mu.Lock()
		done := u.ended >= target
		u.mu.Unlock()
		if done {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the uploads and waits for the last one.
func (u *Uploader) Stop() {
	u.once.Do(func() { close(u.stop) })
	select {
	case <-u.done:
	case <-time.After(3 * uploadTimeout):
	}
}

type conn struct {
	raw  net.Conn
	ssh  *ssh.Client
	sftp *sftp.Client
}

func (c *conn) close() {
	if c.sftp != nil {
		c.sftp.Close()
	}
	if c.ssh != nil {
		c.ssh.Close()
	}
	c.raw.Close()
}

func (u *Uploader) loop() {
	defer close(u.done)
	rng := rand.New(rand.NewChaCha8([32]byte{1, 2, 3}))
	var c *conn
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for {
		wait := uploadEvery
		if c == nil {
			var err error
			if c, err = u.connect(); err != nil {
				u.fail("connect", err)
				wait = retryEvery
			}
		}
		if c != nil {
			if err := u.upload(c, rng); err != nil {
				u.fail("upload", err)
				c.close()
				c = nil
				wait = retryEvery
			}
		}
		select {
		case <-u.stop:
			return
		case <-time.After(wait):
		}
	}
}

func (u *Uploader) connect() (*conn, error) {
	raw, err := net.DialTimeout("tcp", u.addr, uploadTimeout)
	if err != nil {
		return nil, err
	}
	c := &conn{raw: raw}
	raw.SetDeadline(time.Now().Add(uploadTimeout))
	cfg := &ssh.ClientConfig{
		User: u.user,
		Auth: []ssh.AuthMethod{ssh.Password(u.pass)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			fp := ssh.FingerprintSHA256(key)
			u.mu.Lock()
			if _, ok := u.hostKeys[fp]; !ok {
				u.hostKeys[fp] = time.Now()
			}
			u.mu.Unlock()
			return nil
		},
		Timeout: uploadTimeout,
	}
	sc, chans, reqs, err := ssh.NewClientConn(raw, u.addr, cfg)
	if err != nil {
		raw.Close()
		return nil, err
	}
	c.ssh = ssh.NewClient(sc, chans, reqs)
	if c.sftp, err = sftp.NewClient(c.ssh); err != nil {
		c.close()
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

// upload writes one new file and waits for the server's acknowledgement of
// its close; the connection's deadline bounds the whole exchange.
func (u *Uploader) upload(c *conn, rng *rand.Rand) error {
	u.mu.Lock()
	u.seq++
	u.begun++
	tag, seq := u.tag, u.seq
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.ended++
		u.mu.Unlock()
	}()
	data := make([]byte, 1024+rng.IntN(31*1024))
	for i := 0; i+8 <= len(data); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	name := fmt.Sprintf("%s-%06d.bin", tag, seq)
	start := time.Now()
	c.raw.SetDeadline(start.Add(uploadTimeout))
	f, err := c.sftp.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	done := time.Now()
	c.raw.SetDeadline(time.Time{})
	u.mu.Lock()
	u.acks = append(u.acks, Ack{Tag: tag, Name: name, Sum: sha256.Sum256(data), Start: start, Done: done})
	u.mu.Unlock()
	return nil
}

func (u *Uploader) fail(phase string, err error) {
	u.mu.Lock()
	u.fails = append(u.fails, Failure{Tag: u.tag, At: time.Now(), Phase: phase, Err: err.Error()})
	u.mu.Unlock()
}

// Acks returns the acknowledged uploads tagged tag ("" = all).
func (u *Uploader) Acks(tag string) []Ack {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []Ack
	for _, a := range u.acks {
		if tag == "" || a.Tag == tag {
			out = append(out, a)
		}
	}
	return out
}

// FirstAckAfter returns the first acknowledged upload that started at or
// after t.
func (u *Uploader) FirstAckAfter(t time.Time) (Ack, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, a := range u.acks {
		if !a.Start.Before(t) {
			return a, true
		}
	}
	return Ack{}, false
}

// FailuresBetween returns the failed attempts in [from, to].
func (u *Uploader) FailuresBetween(from, to time.Time) []Failure {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []Failure
	for _, f := range u.fails {
		if !f.At.Before(from) && !f.At.After(to) {
			out = append(out, f)
		}
	}
	return out
}

// HostKeys returns the SSH host key fingerprints seen through the load
// balancer (one expected: the key is replicated).
func (u *Uploader) HostKeys() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for fp := range u.hostKeys {
		out = append(out, fp)
	}
	return out
}

// ---- verification on the shared volume ----

// verify checks every acknowledged upload in the shared GatewayHome volume:
// missing files and files whose content differs from what was acknowledged.
func (c *Cluster) verify(acks []Ack) (missing, corrupt []string, err error) {
	if len(acks) == 0 {
		return nil, nil, nil
	}
	sums, err := c.volumeSums(acks)
	if err != nil {
		return nil, nil, err
	}
	for _, a := range acks {
		got, ok := sums[a.Name]
		switch {
		case !ok:
			missing = append(missing, a.Name)
		case got != hex.EncodeToString(a.Sum[:]):
			corrupt = append(corrupt, a.Name)
		}
	}
	return missing, corrupt, nil
}

// userDir is where the admin's SFTP root lives in GatewayHome.
const userDir = "admin"

// volumeSums returns the sha256 of the files named by acks as found in the
// volume: read directly from the host when the volume's directory is
// readable, else through a container that mounts the volume.
func (c *Cluster) volumeSums(acks []Ack) (map[string]string, error) {
	out := map[string]string{}
	if c.homeDir != "" {
		for _, a := range acks {
			b, err := os.ReadFile(filepath.Join(c.homeDir, userDir, a.Name))
			if err != nil {
				continue
			}
			s := sha256.Sum256(b)
			out[a.Name] = hex.EncodeToString(s[:])
		}
		return out, nil
	}
	text, err := run(5*time.Minute, "docker", "run", "--rm", "-v", c.project+"_home:/h:ro", c.nettools,
		"sh", "-c", "cd /h/"+userDir+" && find . -maxdepth 1 -type f -name '*.bin' -exec sha256sum {} +")
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 {
			out[strings.TrimPrefix(f[1], "./")] = f[0]
		}
	}
	return out, nil
}
